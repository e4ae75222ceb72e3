"""Benchmark: what the upstream contract adds to one real test, against ours, same pair.

    flock /tmp/holepunch-e2e.lock .venv/bin/python bench/upstream_overhead.py [--runs 5]

The same dialer (the newest rust image, ours) against two listeners, tcp, one test at a time
on one worker, alternating: rust-upstream-head (rust-libp2p's own client, `contract: upstream`:
the worker adds a namespace holder and the key-space proxy on its LAN, worker.contracts) and
the newest rust image itself (ours). Upstream listens, not dials: its dialer fails at once on a
client bug (impl/rust/README.md). Prints, for each, the median of the worker's `timings` line
per test (worker.phases): the whole test, the harness's share (all but the dialer's own run),
the dialer's own run and each phase; and the RTTs. Asserts nothing. Needs the images built,
rust-upstream-head included (`holepunch-controller build rust-upstream-head`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from localcluster import Deadline, LocalCluster, bounded_main
from testcases import REPO, image, newest_rust, request

from cluster.models import Contract, Status, TestRecord  # noqa: E402 - testcases put the repository on sys.path
from worker.phases import parse_line  # noqa: E402

HOST = "bench-upstream"
PORT = 16406
LAN_POOL = "10.205.0.0/16"  # apart from the default pool another worker on this engine may use
UPSTREAM = "impl/rust/upstream-head"


def timings(worker_log: str, prefix: str) -> list[dict[str, float]]:
    found = []
    for line in worker_log.splitlines():
        parsed = parse_line(line)
        if parsed and parsed[0].startswith(prefix):
            found.append(parsed[1])
    return found


def show(label: str, found: list[dict[str, float]], rtts: list[float]) -> None:
    if not found:
        print(f"{label}: no timings lines in the worker's log")
        return
    total = [p["total"] for p in found]
    own = [p.get("dialer-own-run", 0.0) for p in found]
    share = [t - o for t, o in zip(total, own, strict=True)]
    print(f"{label} ({len(found)} tests, passed {len(rtts)}): total median "
          f"{statistics.median(total):.2f} s [{min(total):.2f}..{max(total):.2f}], harness share "
          f"{statistics.median(share):.2f} s, dialer's own run {statistics.median(own):.2f} s, "
          f"RTT {', '.join(f'{r:.0f}' for r in rtts)} ms")
    names = [n for n in dict.fromkeys(n for p in found for n in p) if n not in ("total",)]
    print("  phases (median s): " + ", ".join(
        f"{n} {statistics.median(p.get(n, 0.0) for p in found):.2f}" for n in names))


def run(args: argparse.Namespace, deadline: Deadline) -> int:
    if not (REPO / UPSTREAM / "image.yaml").is_file():
        print(f"{UPSTREAM}: not built (holepunch-controller build rust-upstream-head)")
        return 2
    rust, upstream = newest_rust(), image(UPSTREAM)
    pass_id = f"bench{os.getpid()}"
    rtts: dict[str, list[float]] = {"upstream": [], "ours": []}
    with LocalCluster(HOST, PORT, LAN_POOL, deadline, concurrency=1) as cluster:
        cluster.run([request("warm-up x warm-up (tcp)", rust, rust, pass_id)])
        for i in range(args.runs):
            mixed = request(f"upstream {i} x upstream (tcp)", rust, upstream, pass_id)
            mixed = mixed.model_copy(update={"test": mixed.test.model_copy(
                update={"listener_contract": Contract.UPSTREAM})})
            for kind, req in (("upstream", mixed),
                              ("ours", request(f"ours {i} x ours (tcp)", rust, rust, pass_id))):
                for payload in cluster.run([req])[1]:
                    record = TestRecord.model_validate(payload["record"])
                    if record.status is Status.PASS and record.rtt_ms is not None:
                        rtts[kind].append(record.rtt_ms)
        worker_log = cluster.worker_log()
    print(f"dialer {rust.image_name} (ours), tcp, one at a time, {args.runs} runs each, alternating")
    show(f"listener {upstream.image_name} (upstream contract)", timings(worker_log, "upstream "),
         rtts["upstream"])
    show(f"listener {rust.image_name} (ours)", timings(worker_log, "ours "), rtts["ours"])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1200,
                        help="seconds; the bench stops (and cleans up) when they are spent")
    args = parser.parse_args()
    sys.exit(bounded_main(lambda deadline: run(args, deadline), args.budget))


if __name__ == "__main__":
    main()
