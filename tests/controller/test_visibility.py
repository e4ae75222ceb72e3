"""--timeout against the consumers' visibility timeouts (replies of `inspect conf`, faked)."""

from __future__ import annotations

import pytest

from cluster.celeryconfig import celery_settings
from cluster.errors import UsageError
from controller.run.visibility import check_visibility, consumer_visibilities, refusal


def conf(max_test_timeout: int, visibility: int | None = None) -> dict:
    return {"broker_transport_options": celery_settings(
        "redis://x", max_test_timeout, visibility)["broker_transport_options"]}


class FakeApp:
    def __init__(self, replies: dict):
        self.replies = replies
        outer = self

        class Inspect:
            def __init__(self, timeout: float):
                pass

            def conf(self):
                return outer.replies

        self.control = type("Control", (), {"inspect": lambda _self, timeout: Inspect(timeout)})()


def test_consumers_started_for_the_timeout_are_accepted() -> None:
    replies = {"holepunch@a": conf(600), "reporter@c": conf(600)}
    assert check_visibility(FakeApp(replies), 600) == {"holepunch@a": 840, "reporter@c": 840}
    assert check_visibility(FakeApp({}), 600) == {}


def test_a_timeout_one_consumer_cannot_cover_is_refused_with_the_numbers() -> None:
    replies = {"holepunch@a": conf(600), "holepunch@b": conf(120), "reporter@c": conf(120, 90)}
    with pytest.raises(UsageError) as caught:
        check_visibility(FakeApp(replies), 600)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    for part in ("--timeout", "600 s per test", "at least 840 s", "holepunch@b has 360 s",
                 "reporter@c has 90 s", "--max-test-timeout 600", "a restart of those"):
        assert part in message, message
    assert "holepunch@a" not in message


def test_the_largest_timeout_that_fits_is_named() -> None:
    assert "--timeout 120 or less" in refusal(121, {"w": 360})
    assert refusal(120, {"w": 360}) is None
    assert consumer_visibilities({"w": {"broker_transport_options": "hidden"}, "v": None}) == {}


@pytest.mark.e2e
def test_submit_refuses_a_timeout_its_real_worker_cannot_cover(tmp_path) -> None:
    """A real Redis and a real worker started for 120 s tests: `submit --timeout 600` is
    refused before anything is built, naming the worker and the numbers."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    broker = f"redis://127.0.0.1:{port}/0"
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL)
    worker = subprocess.Popen([str(bin_dir / "holepunch-worker"), "--broker", broker, "-n",
                               f"visibility-{port}", "-c", "1", "--without-mingle",
                               "--cache-dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from cluster.app import configure
        app = configure(broker, 120)
        deadline = time.monotonic() + 60
        while not (app.control.inspect(timeout=1).ping() or {}):
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never answered"
        repo = Path(__file__).resolve().parents[2]
        run = subprocess.run([str(bin_dir / "holepunch-controller"), "submit", "--root", str(repo),
                              "--broker", broker, "--timeout", "600", "-o", str(tmp_path / "out"),
                              "--test-filter", "go-v0.51 x go-v0.51"],
                             capture_output=True, text=True, timeout=120)
        output = run.stdout + run.stderr
        assert run.returncode == 2, output
        assert f"holepunch@visibility-{port} has 360 s" in output and "840 s" in output, output
        assert "Traceback" not in output and "saved" not in output, output
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        redis.terminate()
        redis.wait()
