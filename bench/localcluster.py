"""A private broker and a real `holepunch-worker` for the length of a bench, and nothing after.

Each bench gets its own redis-server on loopback, its own Celery app (never the shared
`cluster.app.app`: re-pointing that one at a second broker keeps the first broker's connection
pool, which is how bench/overhead.py once hung), its own run directory (locks, subnet leases),
cache and LAN pool, so it neither sees nor frees what another worker on this engine holds.

`stop()` is safe to call at any point, also when `start()` failed half-way: it ends the processes
it started (by their process group), runs `holepunch-worker --cleanup` for its host name, and
removes its temporary directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery
from celery.result import AsyncResult

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cluster.celeryconfig import TEST_QUEUE, celery_settings  # noqa: E402
from cluster.tasks import RunRequest, run_test_signature  # noqa: E402

WORKER = REPO / ".venv" / "bin" / "holepunch-worker"


class Deadline:
    """The bench's own time budget: every wait takes what is left of it, never more."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the bench ran out of its time budget (--budget)")
        return left if cap is None else min(left, cap)


class LocalCluster:
    def __init__(self, host: str, port: int, lan_pool: str, deadline: Deadline,
                 concurrency: int | None = None, max_test_timeout: int = 120,
                 worker_options: tuple[str, ...] = ()):
        self.host = host
        self.port = port
        self.lan_pool = lan_pool
        self.deadline = deadline
        self.concurrency = concurrency
        self.max_test_timeout = max_test_timeout
        self.worker_options = worker_options
        self.broker = f"redis://127.0.0.1:{port}/0"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"hp-bench-{host}-"))
        self.run_dir = self.tmp / "run"
        self.cache_dir = self.tmp / "cache"
        self.redis: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.app: Celery | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> LocalCluster:
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=(self.tmp / "redis.log").open("w"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_port()
        command = [str(WORKER), "--broker", self.broker, "-n", self.host, "--cache-dir",
                   str(self.cache_dir), "--lan-pool", self.lan_pool, "--max-test-timeout",
                   str(self.max_test_timeout), "--loglevel", "INFO"]
        if self.concurrency:
            command += ["-c", str(self.concurrency)]
        command += list(self.worker_options)
        self.worker = subprocess.Popen(command, env=self.env(),
                                       stdout=(self.tmp / "worker.log").open("w"),
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        self.app = Celery(f"holepunch-bench-{self.host}", set_as_current=False)
        self.app.conf.update(celery_settings(self.broker, self.max_test_timeout))
        node = f"holepunch@{self.host}"
        while not self.app.control.ping(destination=[node], timeout=1.0):
            if self.worker.poll() is not None:
                raise RuntimeError(f"the worker exited {self.worker.returncode}: "
                                   + self.worker_log()[-3000:])
            self.deadline.left()
        return self

    def stop(self) -> list[str]:
        """End everything this cluster started; returns what `--cleanup` still had to remove."""
        notes: list[str] = []
        if self.app is not None:
            self.app.close()
        if self.worker is not None:
            notes += _end(self.worker, "worker", grace=150)
        cleanup = subprocess.run([str(WORKER), "--cleanup", "--broker", self.broker, "-n",
                                  self.host, "--cache-dir", str(self.cache_dir), "--lan-pool",
                                  self.lan_pool], env=self.env(), capture_output=True, text=True,
                                 timeout=300, check=False)
        if cleanup.stderr.strip():
            notes.append(f"--cleanup: {cleanup.stderr.strip()}")
        if self.redis is not None:
            notes += _end(self.redis, "redis-server", grace=10)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return notes

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        for note in self.stop():
            print(f"[{self.host}] {note}", file=sys.stderr)

    # ------------------------------------------------------------------ use

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOLEPUNCH_RUN_DIR": str(self.run_dir)}

    def submit(self, request: RunRequest) -> AsyncResult:
        sig = run_test_signature(request)
        return self.app.send_task(sig.task, args=sig.args, kwargs=sig.kwargs, queue=TEST_QUEUE)

    def wait(self, results: list[AsyncResult], cap: float = 900) -> list[dict]:
        return [r.get(timeout=self.deadline.left(cap), propagate=True) for r in results]

    def run(self, requests: list[RunRequest]) -> tuple[float, list[dict]]:
        """Submit all at once, wait for all: (wall seconds, payloads)."""
        started = time.monotonic()
        payloads = self.wait([self.submit(r) for r in requests])
        return time.monotonic() - started, payloads

    def worker_log(self) -> str:
        try:
            return (self.tmp / "worker.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_port(self) -> None:
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.redis.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} exited: "
                                       + (self.tmp / "redis.log").read_text()[-2000:]) from None
                self.deadline.left()
                time.sleep(0.05)


def _end(proc: subprocess.Popen, what: str, grace: float) -> list[str]:
    """SIGTERM the process (a warm shutdown for the worker), then SIGKILL its whole group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
            return []
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
    except ProcessLookupError:
        return []
    proc.wait(10)
    return [f"{what} did not stop within {grace:.0f} s of SIGTERM: killed"]


def bounded_main(main, budget_s: float) -> int:
    """Run `main(deadline)` so that SIGTERM, Ctrl-C and the budget all end it through its
    `finally` blocks (SIGALRM a minute after the budget, should a wait ignore the deadline)."""
    def _stop(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGALRM, _stop)
    signal.alarm(int(budget_s) + 60)
    try:
        return main(Deadline(budget_s))
    finally:
        signal.alarm(0)
