"""Benchmark: how fast a lost worker host's tests run again elsewhere, on the cluster of compose.cluster.yml.

    .venv/bin/python bench/failover.py [--visibility 3600] [--cases kill,pause] [--throughput]

Brings the cluster up (its own ports and secrets folder), warms both hosts up with a 4-test pass
(each fetches its images once), then for each case an 8-test pass (rust-v0.57, go-v0.51, tcp and
quic) on the two hosts (2 tests at once each):
  kill    `docker kill` (SIGKILL) of worker-b's container as soon as it runs a test
  pause   `docker pause` of worker-b (it vanishes without closing a connection), unpaused once its
          tests run elsewhere: it finishes them late, and its results must not count twice
Per case it prints, from the loss of worker-b: when each test it was running was back on the
queue, when it started again on worker-a (a free slot there may take a while: the pass keeps
worker-a busy), the pass time, and the records (exactly one per test). The visibility timeout is
set far above the tests (3600 s by default) so it cannot be what moves them.
--throughput adds the old comparison: 12 tests on the embedded default vs the two hosts.

Needs the images built (`holepunch-controller build rust-v0.57 go-v0.51 python-v0.8`). Takes the
cluster down at the end. Every step has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cluster.yamlio import read_yaml  # noqa: E402 - the repository is on sys.path now

CONTROLLER = str(Path(sys.executable).with_name("holepunch-controller"))
BROKER_PORT = 16391
SECRETS = Path(tempfile.mkdtemp(prefix="holepunch-bench-failover-secrets-"))
ENV = {**os.environ, "HOLEPUNCH_CLUSTER_SECRETS": str(SECRETS)}
BROKER = str(SECRETS / "broker-url")
TWELVE = ("rust-v0.57 x rust-v0.57|rust-v0.57 x go-v0.51|go-v0.51 x rust-v0.57|go-v0.51 x go-v0.51"
          "|python-v0.8 x python-v0.8|python-v0.8 x rust-v0.57|python-v0.8 x go-v0.51"
          "|rust-v0.57 x python-v0.8")
FOUR = ("rust-v0.57 x rust-v0.57 (tcp, noise, yamux|go-v0.51 x go-v0.51 (tcp, noise, yamux"
        "|rust-v0.57 x go-v0.51 (tcp, noise, yamux|go-v0.51 x rust-v0.57 (tcp, noise, yamux")
EIGHT = FOUR + ("|rust-v0.57 x rust-v0.57 (quic|go-v0.51 x go-v0.51 (quic"
                "|rust-v0.57 x go-v0.51 (quic|go-v0.51 x rust-v0.57 (quic")
LOST, OTHER = "holepunch@worker-b", "holepunch@worker-a"


def run(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ENV)


def submit(out: Path, test_filter: str, *extra: str) -> list[str]:
    return [CONTROLLER, "submit", "--root", str(REPO), "-o", str(out), "--test-filter", test_filter,
            "--test-ignore", "", "--timeout", "60", "--deadline", "1200", *extra]


def timed_pass(out: Path, test_filter: str, *extra: str) -> tuple[float, dict]:
    started = time.monotonic()
    result = run(submit(out, test_filter, *extra))
    seconds = time.monotonic() - started
    if not (out / "results.yaml").is_file():
        sys.exit(f"no results.yaml ({result.returncode}): {result.stderr[-2000:]}")
    return seconds, read_yaml(out / "results.yaml")


def summary(results: dict) -> str:
    tests = results["tests"]
    names = [t["name"] for t in tests]
    hosts = sorted({t.get("host") or "?" for t in tests})
    passed = sum(t["status"] == "pass" for t in tests)
    partial = " PARTIAL" if results["metadata"].get("partial") else ""
    return (f"{len(tests)} records for {len(set(names))} tests, {passed} passed, hosts "
            f"{', '.join(hosts)}{partial}")


def broker() -> redis.Redis:
    return redis.Redis.from_url((SECRETS / "broker-url").read_text().strip(), socket_timeout=5)


def started_on(client: redis.Redis) -> dict[str, str]:
    """task id -> the host its STARTED state names (tasks running now)."""
    running = {}
    for key in client.scan_iter(match="celery-task-meta-*", count=500):
        raw = client.get(key)
        meta = json.loads(raw) if raw else {}
        if meta.get("status") == "STARTED" and isinstance(meta.get("result"), dict):
            running[meta["task_id"]] = meta["result"].get("hostname")
    return running


def queued(client: redis.Redis) -> set[str]:
    return {json.loads(raw)["headers"]["id"] for raw in client.lrange("holepunch.tests", 0, -1)}


def state_of(client: redis.Redis, task_id: str) -> tuple[str | None, str | None]:
    raw = client.get(f"celery-task-meta-{task_id}")
    meta = json.loads(raw) if raw else {}
    result = meta.get("result")
    host = result.get("hostname") if isinstance(result, dict) else None
    return meta.get("status"), host


def lose_worker_b(out: Path, case: str, deadline: float = 900) -> None:
    proc = subprocess.Popen(submit(out, EIGHT, "--broker", BROKER), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=REPO, env=ENV)
    client = broker()
    started = time.monotonic()
    worker_b = "holepunch-cluster_worker-b_1"
    try:
        lost: list[str] = []
        while not lost:
            if proc.poll() is not None or time.monotonic() - started > 300:
                sys.exit("worker-b never ran a test")
            lost = [t for t, host in started_on(client).items() if host == LOST]
            time.sleep(0.3)
        time.sleep(3)  # a few seconds into its tests
        lost = [t for t, host in started_on(client).items() if host == LOST]
        run(["docker", case, worker_b], timeout=60)
        at = time.monotonic()
        back: dict[str, float] = {}
        again: dict[str, float] = {}
        unpaused = False
        while proc.poll() is None and time.monotonic() - at < deadline:
            now = time.monotonic() - at
            waiting = queued(client)
            for task_id in lost:
                status, host = state_of(client, task_id)
                if task_id not in back and (task_id in waiting or host == OTHER):
                    back[task_id] = now
                if task_id not in again and host == OTHER and status == "STARTED":
                    again[task_id] = now
            if case == "pause" and not unpaused and len(again) == len(lost):
                run(["docker", "unpause", worker_b], timeout=60)  # heals: finishes them late
                unpaused = True
            time.sleep(0.2)
        proc.wait(timeout=max(10.0, deadline - (time.monotonic() - at)))
        ended = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
        if case == "pause":
            run(["docker", "unpause", worker_b], timeout=60)
    results = read_yaml(out / "results.yaml")
    figures = ", ".join(f"back on the queue {back.get(t, float('nan')):.1f} s, started on "
                        f"worker-a {again.get(t, float('nan')):.1f} s" for t in lost)
    print(f"  {case:5}: worker-b had {len(lost)} tests running: {figures}", flush=True)
    print(f"  {case:5}: pass {ended - started:.1f} s, loss -> pass done {ended - at:.1f} s "
          f"({summary(results)})", flush=True)
    if case == "kill":
        run(["docker", "start", worker_b], timeout=60)
    time.sleep(20)  # worker-b back and consuming before the next case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visibility", type=int, default=3600,
                        help="the cluster's visibility timeout (s); far above the tests by default")
    parser.add_argument("--cases", default="kill,pause", help="kill, pause, or both (comma-separated)")
    parser.add_argument("--throughput", action="store_true",
                        help="also 12 tests on the embedded default vs on the two hosts")
    args = parser.parse_args()
    (REPO / ".test-output").mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="bench-failover-", dir=REPO / ".test-output"))

    if args.throughput:
        one_host, one = timed_pass(out / "one-host", TWELVE, "--workers", "4")
        print(f"one host (embedded, 4 at once):   {one_host:6.1f} s  ({summary(one)})", flush=True)
    up_started = time.monotonic()
    up = run([CONTROLLER, "cluster", "up", "--root", str(REPO), "--broker-port", str(BROKER_PORT),
              "--flower-port", "15591", "--cache-port", "18091", "--concurrency", "2",
              "--max-test-timeout", "60", "--visibility-timeout", str(args.visibility)])
    if up.returncode != 0:
        sys.exit(f"cluster up failed: {up.stderr[-2000:]}")
    print(f"cluster up:                       {time.monotonic() - up_started:6.1f} s", flush=True)
    try:
        first, res = timed_pass(out / "warm-up", FOUR, "--broker", BROKER)
        print(f"warm-up pass (fetches images):    {first:6.1f} s  ({summary(res)})", flush=True)
        plain, res = timed_pass(out / "cluster-8", EIGHT, "--broker", BROKER)
        print(f"8-test pass, no host lost:        {plain:6.1f} s  ({summary(res)})", flush=True)
        print(f"worker-b lost (visibility timeout {args.visibility} s):", flush=True)
        for case in args.cases.split(","):
            lose_worker_b(out / f"lost-{case}", case)
        if args.throughput:
            two_hosts, res = timed_pass(out / "cluster-warm", TWELVE, "--broker", BROKER)
            print(f"two hosts, 12 tests (2+2 at once): {two_hosts:6.1f} s  ({summary(res)}); "
                  f"ratio one host / two hosts {one_host / two_hosts:.2f} (both hosts share this "
                  "machine's cores: overhead, not scaling)", flush=True)
    finally:
        logs = run([CONTROLLER, "cluster", "compose", "logs", "--no-color", "reporter"], timeout=120)
        (out / "reporter.log").write_text(logs.stdout + logs.stderr)
        run([CONTROLLER, "cluster", "down"], timeout=600)
        shutil.rmtree(SECRETS, ignore_errors=True)
        print(f"outputs and the reporter's log: {out}", flush=True)


if __name__ == "__main__":
    main()
