"""Session fixtures for the e2e tests: the engine, and the global services of a worker host.

Anything missing (engine, iptables, an image) skips the tests with the reason.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException
from harness import E2E_HOST, REPO, Impl, Session, image_yaml_id, newest_built, present_image
from harness import run_pair as _run_pair

from cluster.cache import Cache
from cluster.errors import InfrastructureError
from cluster.network import DEFAULT_PUBLIC_SUBNET
from worker import hosts
from worker.host import Host
from worker.reaper import reap_tests
from worker.subnets import DEFAULT_POOL


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
        pytest.fail(f"global services did not start: {err}")
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
