"""A real Celery worker process on a real broker runs real tests on this Docker engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import docker
import pytest

from cluster.app import configure
from cluster.models import ImageInfo, Status, TestCase, TestRecord, Transport
from cluster.tasks import RunRequest, run_test_signature
from tests.e2e.worker.harness import REPO, built_image, docker_or_skip
from worker.warmrouters import WARM, newest_router_image

HOST = "e2e-worker"


@pytest.fixture(scope="module")
def worker(broker_url, tmp_path_factory):
    docker_or_skip()
    run_dir = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "HOLEPUNCH_RUN_DIR": str(run_dir)}
    log = (run_dir / "worker.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("holepunch-worker")),
                             "--broker", broker_url, "-c", "2", "-n", HOST,
                             "--cache-dir", str(cache), "--loglevel", "INFO"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    app = configure(broker_url, 120)
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("worker did not start: " + (run_dir / "worker.log").read_text()[-3000:])
    yield app
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("worker did not stop within 90 s of SIGTERM")
    client = docker.from_env()
    leftovers = client.containers.list(all=True, filters={"label": f"holepunch.host={HOST}"},
                                        ignore_removed=True)
    assert not leftovers, f"left behind: {[c.name for c in leftovers]}"
    networks = client.networks.list(filters={"label": f"holepunch.host={HOST}"})
    assert not networks, f"networks left behind (LAN pool?): {[n.name for n in networks]}"


def request(dialer: ImageInfo, listener: ImageInfo, transport: str, timeout: int = 120,
            name: str | None = None) -> RunRequest:
    test = TestCase(name=name or f"{dialer.image_name} x {listener.image_name} ({transport})",
                    dialer=dialer.image_name, listener=listener.image_name,
                    transport=Transport(transport))
    return RunRequest(pass_id="e2e", test=test, dialer=dialer, listener=listener,
                      router=built_image("router"), relay=built_image("rust-relay"),
                      base=built_image("impl/base"), timeout_seconds=timeout)


def run(app, req: RunRequest, wait: float) -> tuple[TestRecord, dict]:
    result = run_test_signature(req).apply_async()
    payload = result.get(timeout=wait)
    return TestRecord.model_validate(payload["record"]), payload


def newest_rust() -> ImageInfo:
    versions = sorted((REPO / "impl" / "rust").glob("v*/image.yaml"))
    if not versions:
        pytest.skip("no rust implementation is built")
    return built_image(str(versions[-1].parent.relative_to(REPO)))


def test_real_hole_punch_through_the_task(worker) -> None:
    rust = newest_rust()
    record, payload = run(worker, request(rust, rust, "tcp"), wait=240)
    assert record.status is Status.PASS, payload["log"][-3000:]
    assert record.rtt_ms >= 180  # four 50 ms router delays; no upper bound (load inflates it)
    assert record.host == HOST and record.exit_code == 0
    assert record.docker_compose.startswith("docker-compose/") and "dialer_router" in payload["compose"]
    # Each task process started a test's routers at its start (worker.warmrouters.prewarm), for
    # the engine's newest router image: this first test adopted them.
    if newest_router_image(docker.from_env()) == f"sha256:{built_image('router').image_id}":
        assert "[holepunch] routers: started before the test in standby" in payload["log"]
        assert "router: setting LAN_SUBNET=" in payload["log"]
    started, finished = (datetime.fromisoformat(t.replace("Z", "+00:00"))
                         for t in (record.started_at, record.finished_at))
    assert started.tzinfo is not None and started < finished  # the timeline of results.html


def test_hung_dialer_times_out_and_leaves_nothing(worker, hang_image) -> None:
    rust = newest_rust()
    hang = ImageInfo(image_id=hang_image, image_name="hang", built_at="2026-01-01T00:00:00Z",
                     arch="x86_64")
    record, payload = run(worker, request(hang, rust, "tcp", timeout=15), wait=180)
    assert record.status is Status.FAIL and record.reason == "timeout"
    # The record comes once the logs are read; the removal finishes in the background.
    _assert_torn_down(docker.from_env())


def _test_leftovers(client) -> tuple[list, list]:
    """The host's test containers and networks, and what is still attached to its LAN pool
    networks (worker.lanpool: kept across tests, never with a finished test's containers). The
    next test's routers, started in standby (worker.warmrouters), are no test's leftovers: the
    worker's own shutdown removes them (the fixture checks)."""
    labels = {"label": [f"holepunch.host={HOST}", "holepunch.role=test"]}
    attached = [f"{name} on {network.name}"
                for network in client.networks.list(filters={"label": [
                    f"holepunch.host={HOST}", "holepunch.role=lan"]})
                for name in _attached(client, network.id) if not name.startswith("hp-warm-")]
    containers = [c for c in client.containers.list(all=True, filters=labels, ignore_removed=True)
                  if WARM not in c.labels]
    return containers + attached, client.networks.list(filters=labels)


def _attached(client, network_id: str) -> list[str]:
    try:
        found = client.api.inspect_network(network_id).get("Containers") or {}
    except docker.errors.NotFound:
        return []
    return [c.get("Name", "?") for c in found.values()]


def _assert_torn_down(client, within_s: float = 120) -> None:
    deadline = time.monotonic() + within_s
    while any(_test_leftovers(client)) and time.monotonic() < deadline:
        time.sleep(0.2)
    containers, networks = _test_leftovers(client)
    assert not containers and not networks, (
        f"left behind: {[getattr(c, 'name', c) for c in containers]} {[n.name for n in networks]}")


def test_terminated_task_tears_its_test_down_even_when_signalled_twice(worker, hang_image) -> None:
    """What Celery does to a running late-ack task when the broker connection drops (SIGTERM to
    its pool process), with a second SIGTERM arriving while the teardown runs."""
    rust = newest_rust()
    hang = ImageInfo(image_id=hang_image, image_name="hang", built_at="2026-01-01T00:00:00Z",
                     arch="x86_64")
    result = run_test_signature(request(hang, rust, "tcp", timeout=600,
                                        name="hang x rust (terminated)")).apply_async()
    client = docker.from_env()
    deadline = time.monotonic() + 120
    pid = None
    while pid is None:
        assert time.monotonic() < deadline, "the task never started its dialer"
        running = client.containers.list(ignore_removed=True, filters={"label": [
            f"holepunch.host={HOST}", "com.docker.compose.service=dialer"]})
        active = [task for tasks in (worker.control.inspect(timeout=1.0).active() or {}).values()
                  for task in tasks if task["id"] == result.id]
        if running and active:
            pid = active[0]["worker_pid"]
        time.sleep(0.2)
    worker.control.revoke(result.id)  # its redelivered copy is dropped: this is about the first run
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)  # the teardown has begun: a second signal must not cut it short
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _assert_torn_down(client)
