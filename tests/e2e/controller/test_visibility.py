"""`submit --timeout` refused against a real worker's visibility timeout (a real Redis and a
real holepunch-worker; the checks themselves, on faked replies: tests/controller/test_visibility.py)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.app import configure


def test_submit_refuses_a_timeout_its_real_worker_cannot_cover(tmp_path) -> None:
    """A real Redis and a real worker started for 120 s tests: `submit --timeout 600` is
    refused before anything is built, naming the worker and the numbers."""
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
        app = configure(broker, 120)
        deadline = time.monotonic() + 60
        while not (app.control.inspect(timeout=1).ping() or {}):
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never answered"
        repo = Path(__file__).resolve().parents[3]
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
