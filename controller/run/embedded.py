"""The embedded default: a whole cluster on this machine for the length of one `submit`.

A Redis on loopback (its own port and folder), a worker on the local Docker engine and the
controller-side reporter, each a child process; all stopped on the way out, even on Ctrl-C, and
by the watchdog (controller.run.watchdog) when `submit` is killed outright.

Each embedded `submit` is a worker host of its own (`<hostname>-embedded-<pid>`), so two at once
on one machine (two CI jobs on one runner) never remove or reuse each other's tests, leases or
names; they share the engine's global services when their images match (worker.services).
They boot while `submit` resolves images; the worker host's network is made meanwhile, and its
global services (Redis, relay) start as soon as their images are known, so the first test waits
for neither.
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

from cluster.errors import InfrastructureError
from cluster.lifetime import pid_alive, preexec_die_with_parent

WORKER_HOST_SUFFIX = "-embedded"
LONG_RUNNING = ("redis", "worker", "reporter")
FOLDER_PREFIX = "holepunch-embedded-"
OWNER_FILE = "submit.pid"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin(name: str) -> str:
    """Our own console scripts, next to this interpreter (the venv's bin/)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)



def reclaim_folders(tmp: Path | None = None) -> list[Path]:
    """Remove the embedded folders (Redis's dir, logs) of submits that died without cleaning up."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        try:
            pid = int((folder / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # an older layout's, or one still being made
        if not pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _lower_priority(pid: int, nice: int) -> None:
    """Nice a child that runs in its own session. With the kernel's autogroup scheduling (the
    default on desktop and many server kernels) every session is a group that gets an equal
    share of the CPU whatever its processes' nice values, so the group's own nice value is set
    too; measured here, a niced reporter otherwise booted as fast as the worker it should yield
    to. Best effort: either may be refused."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError:
        pass
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
    except OSError:
        pass


class EmbeddedCluster:
    def __init__(self, cache_dir: Path, concurrency: int | None, max_test_timeout: int,
                 log_dir: Path | None = None):
        self.cache_dir = cache_dir
        self.concurrency = concurrency
        self.max_test_timeout = max_test_timeout
        self.host = f"{socket.gethostname()}{WORKER_HOST_SUFFIX}-{os.getpid()}"
        reclaim_folders()
        self.folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        (self.folder / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.log_dir = log_dir or self.folder
        self.broker = ""
        self._procs: dict[str, subprocess.Popen] = {}
        self._watchdog: subprocess.Popen | None = None
        self.interrupted = False

    def __enter__(self) -> EmbeddedCluster:
        try:
            self._start_watchdog()
            port = self._start_redis()
            # The others boot while Redis starts: each needs a second of imports before it
            # connects, Redis some milliseconds to listen.
            self._start("worker", [_bin("holepunch-worker"), "--broker", self.broker,
                                   "-n", self.host, "--cache-dir", str(self.cache_dir),
                                   "--max-test-timeout", str(self.max_test_timeout),
                                   "--without-mingle",
                                   *(["-c", str(self.concurrency)] if self.concurrency else [])])
            # Niced: it has nothing to do until the pass ends, and its boot must not slow the
            # worker's and the services' (the first test waits for those).
            self._start("reporter", [_bin("holepunch-controller"), "--cache-dir",
                                     str(self.cache_dir), "reporter", "--broker", self.broker,
                                     "--name", f"reporter@{self.host}", "--without-mingle",
                                     "--no-host-watch",  # one host: it is lost with the pass
                                     "--max-test-timeout", str(self.max_test_timeout)], nice=19)
            # The host's global services: its network now, Redis and the relay as soon as
            # start_services() names their images (standard input).
            self._start("services", [_bin("holepunch-worker"), "-n", self.host, "--cache-dir",
                                     str(self.cache_dir), "--start-services", "-"],
                        stdin=subprocess.PIPE)
            self._wait_for_redis(port)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start_services(self, base_image: str, relay_image: str) -> None:
        """Start the worker host's Redis and relay now, beside the booting worker."""
        self._close_services_input(f"{base_image},{relay_image}\n")

    def _close_services_input(self, line: str = "") -> None:
        proc = self._procs.get("services")
        if proc is None or proc.stdin is None or proc.stdin.closed:
            return
        try:
            proc.stdin.write(line)
            proc.stdin.close()
        except OSError:  # it has exited already: the pass's first test reports why
            pass

    def check(self) -> None:
        """Raise if Redis, the worker or the reporter has exited: the pass cannot go on.

        Checked while the pass runs instead of waiting for a ping before submitting: tasks wait
        in Redis until the worker takes them, so its boot overlaps everything else.
        """
        for name in LONG_RUNNING:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise InfrastructureError(f"embedded {name} exited ({proc.returncode}); "
                                          f"log: {self._tail(name)}")

    def __exit__(self, exc_type, exc, tb) -> None:
        # Ctrl-C, or submit failed (bad input, a build): a cold stop (running tests are killed,
        # then cleaned up below). A pass that ran to its end: warm.
        interrupted = self.interrupted or exc_type is not None
        sig = signal.SIGQUIT if interrupted else signal.SIGTERM
        for name in ("worker", "reporter"):
            proc = self._procs.get(name)
            if proc and proc.poll() is None:
                proc.send_signal(sig)
        for name in ("worker", "reporter"):
            proc = self._procs.get(name)
            if proc:
                try:
                    proc.wait(timeout=60 if interrupted else self.max_test_timeout + 60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._close_services_input()  # never told the images: it exits at end of input
        services = self._procs.get("services")
        if services and services.poll() is None:
            services.terminate()  # its host lock is released with it; --cleanup removes the rest
            services.wait()
        # Whatever a killed worker left: its test projects, Redis, relay, network, host guard.
        subprocess.run([_bin("holepunch-worker"), "--cleanup", "-n", self.host,
                        "--cache-dir", str(self.cache_dir)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        redis = self._procs.get("redis")
        if redis and redis.poll() is None:
            redis.terminate()
            try:
                redis.wait(timeout=10)
            except subprocess.TimeoutExpired:
                redis.kill()
        self._tell_watchdog("stop")
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _start_watchdog(self) -> None:
        """Started first, in a session of its own: it outlives a killed submit (and a signal to
        submit's process group) long enough to stop the children and remove what they left."""
        logs = self.cache_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / "embedded-watchdog.log").open("a") as log:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-m", "controller.run.watchdog", str(os.getpid()), self.host,
                 str(self.cache_dir), str(self.folder), _bin("holepunch-worker")],
                stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True,
                env=os.environ.copy())

    def _tell_watchdog(self, line: str) -> None:
        if self._watchdog is None or self._watchdog.stdin is None or self._watchdog.stdin.closed:
            return
        try:
            self._watchdog.stdin.write(f"{line}\n".encode())
            self._watchdog.stdin.flush()
            if line == "stop":
                self._watchdog.stdin.close()
        except OSError:
            pass

    def _start_redis(self) -> int:
        """Start redis-server on a free loopback port (without waiting for it); the port."""
        server = shutil.which("redis-server")
        if server is None:
            raise InfrastructureError("redis-server is not installed (apt-get install "
                                      "redis-server), and no --broker was given")
        port = _free_port()
        self._start("redis", [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(self.folder)])
        self.broker = f"redis://127.0.0.1:{port}/0"
        return port

    def _wait_for_redis(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise InfrastructureError(f"local redis-server did not listen on {port}: {self._tail('redis')}")

    def _start(self, name: str, argv: list[str], stdin=None, nice: int = 0) -> None:
        log = (self.log_dir / f"{name}.log").open("w")
        # Own session: the terminal's Ctrl-C reaches submit only, which stops them in order.
        # A parent-death signal: they end with submit even if it is SIGKILLed (the watchdog
        # then removes what the worker's tests left).
        proc = self._procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=stdin, text=True,
            start_new_session=True, env=os.environ.copy(),
            preexec_fn=preexec_die_with_parent())
        self._tell_watchdog(f"pg {proc.pid}")
        if nice:
            _lower_priority(proc.pid, nice)

    def _tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
