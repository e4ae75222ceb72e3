"""A lost worker host's tests run again elsewhere long before the visibility timeout, and each
test still has exactly one record: a killed host (SIGKILL of its container), and a paused one
that comes back and finishes its tests late (its results must not count).

The cluster's visibility timeout is an hour (FAR_VISIBILITY): if the broker's own redelivery
were what moved the tests, they would not move within these tests' deadlines. The bound below
is loose on purpose (a busy machine); bench/failover.py measures the real figures.

Run: `flock /tmp/holepunch-e2e.lock .venv/bin/python -m pytest tests/e2e/cluster/test_failover.py -v`
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import redis

from tests.e2e.cluster.harness import (
    FAR_VISIBILITY,
    FAST,
    FAST_NAMES,
    broker_url,
    container,
    ping,
    results,
    submit_args,
)

# From the loss of worker-b to its tests starting on worker-a, whose two slots may still be busy
# with their own tests: far below the visibility timeout, far above the expected ~10-40 s.
RESTART_BOUND = 300
assert RESTART_BOUND * 10 <= FAR_VISIBILITY


def _meta(client: redis.Redis) -> dict[str, dict]:
    found = {}
    for key in client.scan_iter(match="celery-task-meta-*", count=500):
        raw = client.get(key)
        if raw:
            meta = json.loads(raw)
            found[meta["task_id"]] = meta
    return found


def _running_on(client: redis.Redis, node: str) -> list[str]:
    return [task_id for task_id, meta in _meta(client).items() if meta.get("status") == "STARTED"
            and isinstance(meta.get("result"), dict) and meta["result"].get("hostname") == node]


def _lose_worker_b(out: Path, how: str) -> tuple[subprocess.Popen, float, set[str]]:
    """Submit FAST, and `docker kill|pause` worker-b once it runs a test; (submit, seconds from
    the loss until every test worker-b was running had started on worker-a, their names)."""
    client = redis.Redis.from_url(broker_url(), socket_timeout=5)
    proc = subprocess.Popen(submit_args(out, FAST, "--deadline", "900"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    lost: list[str] = []
    while not lost:
        assert proc.poll() is None and time.monotonic() < deadline, "worker-b never ran a test"
        lost = _running_on(client, "holepunch@worker-b")
        time.sleep(0.3)
    done = subprocess.run(["docker", how, container("worker-b")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    at = time.monotonic()
    while True:
        elsewhere = set(_running_on(client, "holepunch@worker-a"))
        finished = {t for t, m in _meta(client).items() if m.get("status") == "SUCCESS"}
        if set(lost) <= elsewhere | finished:
            break
        assert time.monotonic() - at < RESTART_BOUND, (
            f"worker-b's tests did not start elsewhere within {RESTART_BOUND} s of its loss "
            f"(visibility timeout {FAR_VISIBILITY} s)")
        assert proc.poll() is None, "the pass ended before worker-b's tests ran again"
        time.sleep(0.5)
    metas = _meta(client)
    names = {metas[t]["args"][0] for t in lost if metas.get(t, {}).get("args")}
    return proc, time.monotonic() - at, names


def _one_record_per_test(out: Path, proc: subprocess.Popen) -> list[dict]:
    output, _ = proc.communicate(timeout=900)
    summary = results(out)
    assert summary["metadata"]["partial"] is False, output[-3000:]
    names = [r["name"] for r in summary["tests"]]
    assert sorted(names) == FAST_NAMES, "exactly one record per test\n" + output[-3000:]
    assert proc.returncode in (0, 1), output[-3000:]  # a verdict on every test (no error: exit 3)
    return summary["tests"]


def test_a_killed_hosts_tests_restart_long_before_the_visibility_timeout(
        cluster_far_visibility, out_dir) -> None:
    proc, restarted, _ = _lose_worker_b(out_dir / "killed", "kill")
    try:
        print(f"worker-b killed: its tests started on worker-a {restarted:.1f} s later")
        records = _one_record_per_test(out_dir / "killed", proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["docker", "start", container("worker-b")], capture_output=True)
    assert all(r["status"] == "pass" for r in records), records
    assert ping("holepunch@worker-b", timeout=180), "worker-b did not rejoin"


def test_a_paused_host_that_comes_back_records_nothing_twice(cluster_far_visibility, out_dir) -> None:
    """Paused (it vanishes without closing a connection), taken for lost, its tests re-run on
    worker-a; unpaused, it finishes them late: still one record per test, from the re-runs."""
    try:
        proc, restarted, lost = _lose_worker_b(out_dir / "paused", "pause")
        print(f"worker-b paused: its tests started on worker-a {restarted:.1f} s later")
    finally:
        subprocess.run(["docker", "unpause", container("worker-b")], capture_output=True)
    try:
        records = _one_record_per_test(out_dir / "paused", proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The re-runs' results are the records; worker-b's late ones are dropped.
    assert lost, "the tests worker-b was running are named in their stored state"
    assert {r["host"] for r in records if r["name"] in lost} == {"worker-a"}, records
    assert ping("holepunch@worker-b", timeout=60), "worker-b did not come back"
