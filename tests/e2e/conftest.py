"""The one conftest of the end-to-end tests: every test under tests/e2e/ is marked `e2e` here
(`-m "not e2e"` leaves them all out), and their fixtures: the engine and the global services of a
worker host (clients/, router/), the real cluster (cluster/), the worker's hang image (worker/).
Helpers live in each area's harness.py.

Anything missing (engine, iptables, an image) skips the tests with the reason.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException

from cluster.cache import Cache
from cluster.errors import InfrastructureError
from cluster.network import DEFAULT_PUBLIC_SUBNET
from tests.e2e.clients.harness import (
    E2E_HOST,
    REPO,
    Impl,
    Session,
    image_yaml_id,
    newest_built,
    present_image,
)
from tests.e2e.clients.harness import run_pair as _run_pair
from tests.e2e.cluster.harness import FAR_VISIBILITY, VISIBILITY, out_dir_for, running_cluster
from tests.e2e.worker.harness import built_image, docker_or_skip
from worker import hosts
from worker.host import Host
from worker.reaper import reap_tests
from worker.subnets import DEFAULT_POOL

E2E = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m selects by marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test beneath this folder starts containers: mark it `e2e` (the hook sees every
    collected test of the session, so only those under tests/e2e/ are marked)."""
    for item in items:
        if item.path.resolve().is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)


# ---------------------------------------------------------------------------------------------
# clients/, router/: the engine and a worker host's global services


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as err:
        pytest.skip(f"no Docker engine: {err}")
    return client


def _image_or_skip(client, what: str, folder: Path, tag: str) -> str:
    image_id = present_image(client, image_yaml_id(folder)) or present_image(client, tag)
    if not image_id:
        pytest.skip(f"{what} image is not built ({folder.relative_to(REPO)}/image.yaml or tag {tag})")
    return image_id


@pytest.fixture(scope="session")
def global_services(docker_client, tmp_path_factory):
    """The session's worker host "e2e": internal `hole-punch-network`, Redis and the relay,
    behind the host guard, all from worker.services, and removed at the end."""
    client = docker_client
    base_image = _image_or_skip(client, "base", REPO / "impl" / "base", "holepunch-base:bookworm")
    relay_image = _image_or_skip(client, "relay", REPO / "rust-relay", "holepunch-rust-relay")
    router_image = _image_or_skip(client, "router", REPO / "router", "holepunch-router")
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.skip("the host guard needs root and iptables (no test packet may leave the machine)")

    host = Host(name=E2E_HOST, cache=Cache(tmp_path_factory.mktemp("cache")),
                public_subnet=DEFAULT_PUBLIC_SUBNET, lan_pool=DEFAULT_POOL, image_source=None)
    reap_tests(host.services.client, host.name)  # what a crashed session of ours left
    hosts.register(host.name)  # a worker sharing this engine leaves our services alone
    try:
        services = host.services.ensure(base_image, relay_image)
    except InfrastructureError as err:
        hosts.unregister(host.name)
        host.services.stop()
        # Every end-to-end test needs them, and each would wait out its own timeouts (a CI run
        # once spent its 90 minutes so): end the session now, with the reason.
        pytest.exit(f"global services did not start: {err}", returncode=3)
    print(f"\n[e2e] redis {services.redis_addr}, relay {services.relay_ip}: {services.relay_addrs}")
    yield Session(host=host, services=services, router_image=router_image)
    reap_tests(host.services.client, host.name)
    hosts.unregister(host.name)
    host.services.stop()


@pytest.fixture(scope="session")
def run_pair(global_services: Session):
    """run_pair(dialer_image, listener_image, transport, **opts) -> PairResult, on this session's services."""
    return functools.partial(_run_pair, global_services)


@pytest.fixture(scope="session")
def built(docker_client):
    """built(lang) -> the newest built Impl of that language, or skip the test naming what is missing."""

    def resolve(lang: str) -> Impl:
        found = newest_built(docker_client, lang)
        if found is None:
            pytest.skip(f"no built image for impl/{lang}/*/ (image.yaml with an imageID the engine has)")
        return found

    return resolve


_PAIR_RESULTS: list = []


@pytest.fixture(scope="session")
def pair_results() -> list:
    """Every pair this session ran, (name, PairResult), printed at the end of the run."""
    return _PAIR_RESULTS


def pytest_terminal_summary(terminalreporter):
    if not _PAIR_RESULTS:
        return
    terminalreporter.section("hole-punch pairs")
    for name, result in _PAIR_RESULTS:
        terminalreporter.write_line(f"{name}: {result.summary()}")


# ---------------------------------------------------------------------------------------------
# cluster/: the real cluster of compose.cluster.yml, one per test module


@pytest.fixture(scope="module")
def cluster():
    yield from running_cluster(VISIBILITY)


@pytest.fixture(scope="module")
def cluster_far_visibility():
    yield from running_cluster(FAR_VISIBILITY)


@pytest.fixture
def out_dir(request) -> Path:
    """An output folder inside the checkout (the reporter container can write there)."""
    return out_dir_for(request.node.name)


# ---------------------------------------------------------------------------------------------
# worker/


@pytest.fixture(scope="session")
def hang_image():
    """An implementation image whose client never returns: for the timeout test."""
    client = docker_or_skip()
    base = built_image("impl/base")
    dockerfile = (f"FROM sha256:{base.image_id}\n"
                  'ENTRYPOINT ["/usr/local/bin/holepunch-client-init", "sleep", "infinity"]\n')
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True,
                                   labels={"holepunch.owner": "tests"}, tag="holepunch-test-hang")
    yield image.id.removeprefix("sha256:")
    client.images.remove("holepunch-test-hang", force=True)
