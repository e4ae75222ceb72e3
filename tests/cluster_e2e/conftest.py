"""The real cluster of compose.cluster.yml for the e2e tests: brought up once, torn down after.

Real broker, Flower, cache server, reporter and two Docker-in-Docker worker hosts, each with its
own engine, global Redis and relay. Outputs go under the checkout (the reporter container
mounts it at its own path).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.exceptions
import yaml
from celery import Celery

from cluster.celeryconfig import celery_settings

REPO = Path(__file__).resolve().parents[2]
CONTROLLER = str(Path(sys.executable).with_name("holepunch-controller"))
# Test ports, away from a user's own cluster defaults (16379, 5555, 18080) only by choice of
# number: the project name is shared, so do not run this while your own cluster is up.
BROKER_PORT, FLOWER_PORT, CACHE_PORT = 16390, 15590, 18090
BROKER = f"redis://127.0.0.1:{BROKER_PORT}/0"
FLOWER_AUTH = "tester:e2e-secret"
# A host killed mid-test has its tests re-run after this. It must exceed the longest task: a
# host's first test also fetches five images from the cache server (seen: 100 s under load).
VISIBILITY = 180
HOSTS = ("worker-a", "worker-b")
FAST = ("rust-v0.57 x rust-v0.57 (tcp|go-v0.51 x go-v0.51 (tcp|rust-v0.57 x go-v0.51 (tcp"
        "|go-v0.51 x rust-v0.57 (tcp")
FAST_NAMES = sorted(["rust-v0.57 x rust-v0.57 (tcp, noise, yamux)",
                     "go-v0.51 x go-v0.51 (tcp, noise, yamux)",
                     "rust-v0.57 x go-v0.51 (tcp, noise, yamux)",
                     "go-v0.51 x rust-v0.57 (tcp, noise, yamux)"])


def controller(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([CONTROLLER, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def submit_args(out: Path, test_filter: str, *extra: str) -> list[str]:
    return [CONTROLLER, "submit", "--root", str(REPO), "--broker", BROKER, "-o", str(out),
            "--test-filter", test_filter, "--test-ignore", "", *extra]


def submit(out: Path, test_filter: str, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(submit_args(out, test_filter, *extra), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def results(out: Path) -> dict:
    return yaml.safe_load((out / "results.yaml").read_text())


def container(service: str) -> str:
    return f"holepunch-cluster_{service}_1"


@functools.lru_cache(maxsize=1)
def _probe_app() -> Celery:
    """A Celery app of our own: configuring the shared `cluster.app` here would leave it bound to
    this cluster's broker for every later test in the same pytest process."""
    app = Celery("holepunch-cluster-e2e-probe", set_as_current=False)
    app.conf.update(celery_settings(BROKER, 120, VISIBILITY))
    return app


def ping(node: str, timeout: float = 120) -> bool:
    """The Celery node answers (the worker host is up and consuming)."""
    app = _probe_app()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            replies = app.control.ping([node], timeout=1.0)
        except (OSError, redis.exceptions.ConnectionError):  # a restarted broker: reconnect
            time.sleep(1)
            continue
        if any(node in reply for reply in replies):
            return True
    return False


@pytest.fixture(scope="module")
def cluster():
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine")
    if shutil.which("docker-compose") is None:
        pytest.skip("no docker-compose")
    up = controller("cluster", "up", "--root", str(REPO), "--broker-port", str(BROKER_PORT),
                    "--flower-port", str(FLOWER_PORT), "--cache-port", str(CACHE_PORT),
                    "--flower-auth", FLOWER_AUTH, "--concurrency", "2",
                    "--max-test-timeout", "120", "--visibility-timeout", str(VISIBILITY),
                    timeout=1200)
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        yield BROKER
    finally:
        logs = controller("cluster", "compose", "logs", "--no-color", "--tail", "200", timeout=120)
        (REPO / ".test-output").mkdir(exist_ok=True)
        (REPO / ".test-output" / "cluster-logs.txt").write_text(logs.stdout + logs.stderr)
        down = controller("cluster", "down", timeout=600)
        assert down.returncode == 0, down.stderr[-2000:]


@pytest.fixture
def out_dir(request) -> Path:
    """An output folder inside the checkout (the reporter container can write there)."""
    path = REPO / ".test-output" / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
