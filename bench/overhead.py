"""Benchmark: what the Celery task adds to one real test, and what running tests at once buys.

1. One real test (the newest rust image x itself, tcp) `--runs` times through `run_test` on a real
   worker and a real broker, one at a time, against the compose file of the last of those runs
   run by hand (`docker-compose up` + `down`, the relay address pushed first as the task does)
   as many times. Medians and their ratio (goal <= 1.15).
2. `--batch` tests one at a time against the same number submitted at once to the same worker
   at concurrency 4 (goal >= 3x).
3. The harness's share of each of those tests: everything the worker did for it but the
   dialer's own run (container start to exit), from the worker's `timings` line per test
   (worker.phases), median one at a time and 4 at once (goal <= 2.0 s at 4 at once), with the
   median of each phase, so each 100 ms of it has a name; "teardown" is the wait for the previous
   test's background teardown (worker.teardown), whose own median is shown beside; "lease"
   includes making a lease's LAN networks when the host's pool has none for it yet
   (worker.lanpool), "networks" what the project makes itself (a cgnat side's carrier network).
   `--runs 0` skips part 1.

One worker (concurrency 4) on a private broker (port 16404), run dir, cache and LAN pool; all of
it is stopped and removed at the end, also on failure, Ctrl-C or when `--budget` runs out.
Prints figures; asserts nothing. Run as root with the images built:
    .venv/bin/python bench/overhead.py [--runs 10] [--batch 8] [--budget 1800]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from localcluster import Deadline, LocalCluster, bounded_main
from testcases import newest_rust, request

from cluster.yamlio import parse_yaml  # noqa: E402 - testcases put the repository on sys.path
from worker.phases import parse_line  # noqa: E402
from worker.teardown import BACKGROUND  # noqa: E402
from worker.warmrouters import WARM_MARK  # noqa: E402

HOST = "bench-overhead"
PORT = 16404
LAN_POOL = "10.203.0.0/16"  # apart from the default pool another worker on this engine may use
CONCURRENCY = 4


def by_hand(compose_text: str, runs: int, deadline: Deadline) -> tuple[list[float], list[int]]:
    """The same compose file, up + down by hand, with the relay address pushed as the task does.

    Time counted: the push, `up` until the dialer exits, and `down -v`.
    """
    env = parse_yaml(compose_text, "compose file")["services"]["dialer"]["environment"]
    key = env["TEST_KEY"]
    redis_host, redis_port = env["REDIS_ADDR"].rsplit(":", 1)
    store = redis.Redis(host=redis_host, port=int(redis_port), socket_timeout=5,
                        decode_responses=True)
    relay = store.get("RELAY_TCP_ADDRESS")
    times, codes = [], []
    with tempfile.TemporaryDirectory(prefix="hp-bench-hand-") as tmp:
        path = Path(tmp) / "compose.yaml"
        path.write_text(compose_text)
        for i in range(runs):
            project = f"hp-bench-hand-{os.getpid()}-{i}"
            compose = ["docker-compose", "-p", project, "-f", str(path)]
            started = time.monotonic()
            store.rpush(f"{key}:RELAY_TCP_ADDRESS", relay, relay)
            try:
                up = subprocess.run([*compose, "up", "--no-color", "--exit-code-from", "dialer",
                                     "--abort-on-container-exit", "--timeout", "2"],
                                    capture_output=True, timeout=deadline.left(300), check=False)
                codes.append(up.returncode)
            finally:
                subprocess.run([*compose, "down", "-v", "--remove-orphans", "--timeout", "2"],
                               capture_output=True, timeout=120, check=False)
            times.append(time.monotonic() - started)
            for stale in store.scan_iter(f"{key}:*"):
                store.delete(stale)
    return times, codes


def timings(worker_log: str, prefix: str) -> list[dict[str, float]]:
    """The worker's timings of the tests whose names start with `prefix`."""
    found = []
    for line in worker_log.splitlines():
        parsed = parse_line(line)
        if parsed and parsed[0].startswith(prefix):
            found.append(parsed[1])
    return found


def background_teardowns(worker_log: str, prefix: str) -> list[float]:
    """How long each background teardown (worker.teardown) of the tests named `prefix`... took."""
    marker = f"{BACKGROUND} {prefix}"
    found = []
    for line in worker_log.splitlines():
        at = line.find(marker)
        if at >= 0:
            try:
                found.append(float(line[at:].rpartition(": ")[2].split()[0]))
            except (ValueError, IndexError):
                pass
    return found


def harness_share(phases: dict[str, float]) -> float:
    return phases["total"] - phases.get("dialer-own-run", 0.0)


def adopted(worker_log: str, prefix: str) -> int:
    """How many of the tests named `prefix`... adopted routers started before them."""
    return sum(1 for line in worker_log.splitlines()
               if f"{WARM_MARK} {prefix}" in line and line.rstrip().endswith(": adopted"))


def show_shares(label: str, found: list[dict[str, float]], background: list[float],
                worker_log: str, prefix: str) -> None:
    if not found:
        print(f"{label}: no timings lines in the worker's log")
        return
    shares = [harness_share(p) for p in found]
    warm = adopted(worker_log, prefix)
    print(f"{label}: harness share median {statistics.median(shares):.2f} s "
          f"[{min(shares):.2f}..{max(shares):.2f}] of {len(found)} tests; dialer's own run median "
          f"{statistics.median(p.get('dialer-own-run', 0.0) for p in found):.2f} s; routers "
          f"started before the test for {warm} of them")
    names = list(dict.fromkeys(name for p in found for name in p))
    medians = {name: statistics.median(p.get(name, 0.0) for p in found) for name in names}
    # "run" holds the dialer's own run; what is left of it is container start and stop latency.
    medians["run"] = statistics.median(p.get("run", 0.0) - p.get("dialer-own-run", 0.0)
                                       for p in found)
    shown = {n: v for n, v in medians.items() if n not in ("total", "dialer-own-run")}
    print("  phases (median s): " + ", ".join(
        f"{'run less the dialer' if n == 'run' else n} {v:.2f}" for n, v in shown.items()))
    if background:  # off the test's critical path: not in its share ("teardown" is the wait)
        print(f"  teardown in the background (median s): {statistics.median(background):.2f} "
              f"of {len(background)}")


def passed(payloads: list[dict]) -> int:
    return sum(p["record"]["status"] == "pass" for p in payloads)


def run(args: argparse.Namespace, deadline: Deadline) -> int:
    rust = newest_rust()
    pass_id = f"bench{os.getpid()}"

    def req(name: str):
        return request(name, rust, rust, pass_id)

    load_before = os.getloadavg()
    options = () if args.warm_routers else ("--no-warm-routers",)
    with LocalCluster(HOST, PORT, LAN_POOL, deadline, concurrency=CONCURRENCY,
                      worker_options=options) as cluster:
        cluster.run([req("warm-up x warm-up (tcp)")])  # global services, first image use
        task_times, task_payloads = [], []
        for i in range(args.runs):
            seconds, payloads = cluster.run([req(f"overhead {i} x overhead (tcp)")])
            task_times.append(seconds)
            task_payloads += payloads
        # The last run's file, while its global services still run: same relay, same Redis;
        # its subnets are free again (the task released its lease).
        hand_times, hand_codes = (by_hand(task_payloads[-1]["compose"], args.runs, deadline)
                                  if args.runs else ([], []))

        serial_started, serial_payloads = time.monotonic(), []
        for i in range(args.batch):
            serial_payloads += cluster.run([req(f"serial {i} x serial (tcp)")])[1]
        serial = time.monotonic() - serial_started
        parallel, parallel_payloads = cluster.run(
            [req(f"parallel {i} x parallel (tcp)") for i in range(args.batch)])
        worker_log = cluster.worker_log()
    load_after = os.getloadavg()

    print(f"test: {rust.image_name} x {rust.image_name} (tcp); worker concurrency {CONCURRENCY}; "
          f"warm routers {'on' if args.warm_routers else 'off'}")
    if args.runs:
        task, hand = statistics.median(task_times), statistics.median(hand_times)
        print(f"one test through run_test (median of {args.runs}):  {task:6.2f} s   "
              f"[{min(task_times):.2f}..{max(task_times):.2f}], passed "
              f"{passed(task_payloads)}/{args.runs}")
        print(f"the same compose file by hand (median of {args.runs}): {hand:6.2f} s   "
              f"[{min(hand_times):.2f}..{max(hand_times):.2f}], dialer exit 0 in "
              f"{hand_codes.count(0)}/{args.runs}")
        print(f"ratio task / by hand:                          {task / hand:6.2f}   (goal <= 1.15)")
    print(f"{args.batch} tests one at a time:                       {serial:6.1f} s   "
          f"passed {passed(serial_payloads)}/{args.batch}")
    print(f"{args.batch} tests at once (concurrency {CONCURRENCY}):            {parallel:6.1f} s   "
          f"passed {passed(parallel_payloads)}/{args.batch}")
    print(f"speed-up:                                      {serial / parallel:6.2f}x  (goal >= 3x)")
    show_shares("one at a time", timings(worker_log, "serial "),
                background_teardowns(worker_log, "serial "), worker_log, "serial ")
    show_shares(f"{CONCURRENCY} at once", timings(worker_log, "parallel "),
                background_teardowns(worker_log, "parallel "), worker_log, "parallel ")
    print(f"host: {os.cpu_count()} cores; load average before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f} (1 min)")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-warm-routers", dest="warm_routers", action="store_false",
                        help="the worker starts every test's routers with the test (the A side "
                             "of an A/B against the default)")
    parser.add_argument("--budget", type=float, default=1800,
                        help="seconds; the bench stops (and cleans up) when they are spent")
    args = parser.parse_args()
    sys.exit(bounded_main(lambda deadline: run(args, deadline), args.budget))


if __name__ == "__main__":
    main()
