"""Benchmark: the two ways a lost worker's test could move, side by side, on plain processes.

    .venv/bin/python bench/broker_recovery.py

Two Celery workers (one test slot each) as processes on this machine, one 20 s task; worker a
is lost 2 s into it, worker b is started at once, and the time until the task is STARTED on b
is printed (b's own boot, about 1.3 s here, included). Lost as:
  SIGKILL  the process dies, its sockets close (a killed worker host's container)
  SIGSTOP  it vanishes without closing anything (a paused container, a cut network), and is
           resumed once b runs the task: where its late result goes is printed too
Brokers:
  redis     the cluster's: Redis (redis-server on loopback) with the reporter's host watch
            (controller/run/hostwatch.py) in this process, visibility timeout one hour
  rabbitmq  Debian's rabbitmq-server in a container built on our base image (holepunch-base),
            on loopback with a password, AMQP heartbeat 10 s; Redis as the result backend
Needs redis-server and the base image (`holepunch-controller build` makes it). Cleans up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
REDIS_PORT, AMQP_PORT = 16499, 15673
LABEL = "holepunch.owner=bench-broker-recovery"
RABBIT_IMAGE, RABBIT_NAME = "holepunch-bench-rabbitmq:latest", "holepunch-bench-rabbitmq"
PASSWORD = "bench-" + os.urandom(8).hex()

APP = textwrap.dedent("""\
    import os, sys, time
    sys.path.insert(0, {repo!r})
    import cluster.app
    from worker.tasks import first_result
    app = cluster.app.configure(os.environ["BROKER"], 120, 3600)
    if os.environ["BROKER"].startswith("amqp"):
        app.conf.update(result_backend=os.environ["BACKEND"], broker_heartbeat=10,
                        broker_transport_options={{}})

    @app.task(name="bench.sleep", bind=True, acks_late=True)
    def sleep(self, seconds):
        time.sleep(seconds)
        return first_result(self, {{"record": {{"name": "bench"}}, "host": self.request.hostname}})
    """)


def worker(folder: Path, name: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "celery", "-A", "benchapp", "worker", "-n", name, "-c", "1",
                             "-E", "-Q", "holepunch.tests", "--without-mingle", "--without-gossip",
                             "-l", "ERROR"], cwd=folder, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(folder: Path, broker: str, backend: str) -> None:
    env = {**os.environ, "BROKER": broker, "BACKEND": backend, "PYTHONPATH": str(folder)}
    os.environ.update(BROKER=broker, BACKEND=backend)
    sys.path.insert(0, str(folder))
    import benchapp  # noqa: PLC0415 - written above, configured from the environment
    app = benchapp.app
    watcher = None
    if broker.startswith("redis"):
        from controller.run.hostwatch import HostWatcher  # noqa: PLC0415
        watcher = HostWatcher(app, tasks=frozenset({"bench.sleep"})).start()
    for how in ("SIGKILL", "SIGSTOP"):
        a = worker(folder, "a@bench", env)
        time.sleep(6)
        result = benchapp.sleep.apply_async((20,), queue="holepunch.tests")
        while app.backend.get_task_meta(result.id)["status"] != "STARTED":
            time.sleep(0.2)
        time.sleep(2)
        os.killpg(a.pid, getattr(signal, how))
        lost_at = time.monotonic()
        b = worker(folder, "b@bench", env)
        moved = None
        while time.monotonic() - lost_at < 120:
            meta = app.backend.get_task_meta(result.id)
            if meta["status"] == "STARTED" and meta["result"].get("hostname") == "b@bench":
                moved = time.monotonic() - lost_at
                break
            time.sleep(0.2)
        if how == "SIGSTOP":
            os.killpg(a.pid, signal.SIGCONT)
        recorded = result.get(timeout=60)["host"]
        time.sleep(3)
        print(f"  {how}: started on b after {moved:.1f} s" if moved is not None
              else f"  {how}: not moved within 120 s", f"; the record is from {recorded}", flush=True)
        for proc in (a, b):
            os.killpg(proc.pid, signal.SIGKILL)
    if watcher:
        watcher.stop()
    sys.path.remove(str(folder))
    del sys.modules["benchapp"]


def rabbitmq(folder: Path) -> str:
    (folder / "Dockerfile").write_text(
        "ARG BASE_IMAGE=holepunch-base:bookworm\nFROM ${BASE_IMAGE}\n"
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
        "--no-install-recommends rabbitmq-server && rm -rf /var/lib/apt/lists/*\n"
        'CMD ["rabbitmq-server"]\n')
    conf = folder / "rabbitmq.conf"  # the password in a file, not on a command line
    conf.write_text(f"default_user = holepunch\ndefault_pass = {PASSWORD}\nloopback_users = none\n"
                    "heartbeat = 10\n")
    conf.chmod(0o644)
    subprocess.run(["docker", "build", "-q", "--label", LABEL, "-t", RABBIT_IMAGE,
                    "-f", str(folder / "Dockerfile"), str(folder)], check=True, capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", RABBIT_NAME, "--label", LABEL, "-p",
                    f"127.0.0.1:{AMQP_PORT}:5672", "-v",
                    f"{conf}:/etc/rabbitmq/rabbitmq.conf:ro", RABBIT_IMAGE],
                   check=True, capture_output=True)
    deadline = time.monotonic() + 90
    while "completed with" not in subprocess.run(["docker", "logs", RABBIT_NAME], text=True,
                                                 capture_output=True).stdout:
        if time.monotonic() > deadline:
            sys.exit("rabbitmq-server did not start in 90 s")
        time.sleep(1)
    return f"amqp://holepunch:{PASSWORD}@127.0.0.1:{AMQP_PORT}//"


def main() -> None:
    # The same task module is imported once per broker; the second registration is expected.
    warnings.filterwarnings("ignore", message="Task name 'bench.sleep' is already registered")
    folder = Path(tempfile.mkdtemp(prefix="bench-broker-recovery-"))
    (folder / "benchapp.py").write_text(APP.format(repo=str(REPO)))
    redis_server = subprocess.Popen(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        print("Redis broker + the reporter's host watch (visibility timeout 3600 s):", flush=True)
        measure(folder, f"redis://127.0.0.1:{REDIS_PORT}/0", f"redis://127.0.0.1:{REDIS_PORT}/0")
        print("RabbitMQ broker (AMQP heartbeat 10 s), Redis result backend:", flush=True)
        measure(folder, rabbitmq(folder), f"redis://127.0.0.1:{REDIS_PORT}/1")
    finally:
        subprocess.run(["docker", "rm", "-f", RABBIT_NAME], capture_output=True)
        redis_server.terminate()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
