"""Bench: after 100 real tests through a real worker, nothing is left behind.

A real `holepunch-worker` at its default concurrency, on a private Redis broker on loopback (port
16401), runs `--tests` tests submitted at once: mostly real rust x rust hole punches (tcp and
quic), some whose dialer fails at once (exit 1) and some whose dialer hangs until the per-test
timeout (10 s). Before (after a warm-up) and after, it counts: containers, networks and volumes
with our labels, the host's subnet leases, keys tests left in the global Redis, the broker's
queue, compose files and half-written files in the worker's cache, image download directories in
/tmp, the LAN pool networks (kept across tests, bounded by the task processes), and the open fds
and RSS of the worker's processes; then, with the worker stopped, that nothing of the host is left
at all (global services, LAN pool, guard rules).

Prints the figures; exits 1 on any leak, 2 if the tests themselves went wrong (a passing test
did not pass, a failing one did not fail as meant). Bounded by `--budget`; leaves nothing running.
    .venv/bin/python bench/leaks.py [--tests 100] [--budget 2400]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections import Counter
from dataclasses import dataclass

import docker
from localcluster import Deadline, LocalCluster, bounded_main
from probes import Snapshot, docker_objects, guard_rules, snapshot
from testcases import newest_rust, request

from cluster.celeryconfig import TEST_QUEUE
from cluster.imageid import bare_image_id
from cluster.models import ImageInfo

HOST = "bench-leaks"
PORT = 16401
LAN_POOL = "10.204.0.0/16"  # apart from the default pool another worker on this engine may use
FAILING_TIMEOUT_S = 10
# Process figures may move a little between two idle moments (a reconnected socket, an arena).
# The Docker SDK keys its unix-socket connection pools by request URL and keeps the 25 most recent
# (each with its idle connection to docker.sock), so a pool process's fds rise by up to 25 over
# its first tests and then stay flat (measured: 80 distinct URLs, +23 fds). Beyond that: a leak.
DOCKER_SDK_POOLS = 25
FD_SLACK_PER_PROCESS = 2
RSS_SLACK_KIB_PER_PROCESS = 24 * 1024

STUB_ENTRYPOINTS = {
    # the dialer gives up at once: a plain failed test
    "fail": '["/bin/sh", "-c", "echo bench: giving up >&2; exit 1"]',
    # the dialer never returns: the test's timeout kills the project
    "hang": '["/usr/local/bin/holepunch-client-init", "sleep", "infinity"]',
}


@dataclass(frozen=True)
class Planned:
    kind: str        # pass | fail | timeout
    transport: str


def plan(total: int) -> list[Planned]:
    """Mostly real punches; every 16th fails at once, every 16th (offset) hangs; 1 in 8 is quic."""
    tests = []
    for i in range(total):
        kind = "fail" if i % 16 == 5 else "timeout" if i % 16 == 13 else "pass"
        tests.append(Planned(kind, "quic" if kind == "pass" and i % 8 == 3 else "tcp"))
    return tests


def judge(before: Snapshot, after: Snapshot, tests_run: int) -> list[str]:
    """Every difference that is a leak, in words; empty when the host is as it was."""
    leaks = []
    for what in ("containers", "networks", "volumes"):
        was, now = getattr(before, what), getattr(after, what)
        if now.get("test", 0):
            leaks.append(f"{now['test']} test {what} left")
        if now.get("global", 0) != was.get("global", 0):
            leaks.append(f"global {what}: {was.get('global', 0)} before, {now.get('global', 0)} after")
    # The host's LAN pool networks stay across tests (worker.lanpool): two leases per task
    # process, a few more when tests took one while a process was still making its own.
    lans = after.networks.get("lan", 0)
    if lans > 2 * 2 * len(after.procs):
        leaks.append(f"{lans} LAN pool networks for {len(after.procs) - 1} task processes")
    if after.dangling_volumes > before.dangling_volumes:
        leaks.append(f"dangling volumes on the engine: {before.dangling_volumes} -> "
                     f"{after.dangling_volumes} (anonymous: may be another user's)")
    if after.leases:
        leaks.append(f"subnet leases still held with no test running: {after.leases}")
    if after.test_keys:
        leaks.append(f"{len(after.test_keys)} per-test keys left in the global Redis, e.g. "
                     f"{after.test_keys[:3]}")
    if after.broker["queued"] or after.broker["unacked"]:
        leaks.append(f"broker not drained: {after.broker}")
    if after.compose_files - before.compose_files > tests_run:
        leaks.append(f"{after.compose_files - before.compose_files} compose files for "
                     f"{tests_run} tests")
    if after.partial_files:
        leaks.append(f"{after.partial_files} half-written files in the cache")
    if after.image_tmp_dirs > before.image_tmp_dirs:
        leaks.append(f"image download directories in /tmp: {before.image_tmp_dirs} -> "
                     f"{after.image_tmp_dirs}")
    old = {p.pid: p for p in before.procs}
    if set(old) != {p.pid for p in after.procs}:
        leaks.append(f"worker processes changed: {sorted(old)} -> {[p.pid for p in after.procs]}")
    for proc in after.procs:
        if proc.pid not in old:
            continue
        if proc.fds - old[proc.pid].fds > DOCKER_SDK_POOLS + FD_SLACK_PER_PROCESS:
            leaks.append(f"pid {proc.pid}: open fds {old[proc.pid].fds} -> {proc.fds}")
        if proc.rss_kib - old[proc.pid].rss_kib > RSS_SLACK_KIB_PER_PROCESS:
            leaks.append(f"pid {proc.pid}: RSS {old[proc.pid].rss_kib // 1024} -> "
                         f"{proc.rss_kib // 1024} MiB")
    return leaks


def build_stub(client: docker.DockerClient, kind: str) -> ImageInfo:
    """An implementation image that fails or hangs, on our base image; removed at the end."""
    from testcases import image
    base = image("impl/base")
    dockerfile = f"FROM sha256:{base.image_id}\nENTRYPOINT {STUB_ENTRYPOINTS[kind]}\n"
    built, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True,
                                   forcerm=True, tag=f"holepunch-bench-{kind}",
                                   labels={"holepunch.owner": "bench"})
    return ImageInfo(image_id=bare_image_id(built.id), image_name=f"bench-{kind}",
                     built_at="2026-01-01T00:00:00Z", arch="x86_64")


def show(label: str, snap: Snapshot) -> None:
    procs = ", ".join(f"{p.pid}: {p.fds} fds {p.rss_kib / 1024:.1f} MiB" for p in snap.procs)
    print(f"{label}:\n"
          f"  containers {snap.containers}  networks {snap.networks}  volumes {snap.volumes}  "
          f"dangling volumes (engine) {snap.dangling_volumes}\n"
          f"  subnet leases {len(snap.leases)}  per-test Redis keys {len(snap.test_keys)}  "
          f"broker {snap.broker}\n"
          f"  compose files in cache {snap.compose_files} (half-written {snap.partial_files})  "
          f"image tmp dirs {snap.image_tmp_dirs}  guard rules {snap.guard_rules}\n"
          f"  worker processes: {len(snap.procs)}, {snap.fds} fds, {snap.rss_kib / 1024:.1f} MiB "
          f"RSS in all [{procs}]" + "".join(f"\n  note: {n}" for n in snap.notes))


def run(args: argparse.Namespace, deadline: Deadline) -> int:
    host = args.host
    client = docker.from_env(timeout=120)
    rust = newest_rust()
    pass_id = f"leaks{os.getpid()}"
    stubs: dict[str, ImageInfo] = {}
    try:
        stubs = {"fail": build_stub(client, "fail"), "hang": build_stub(client, "hang")}
        with LocalCluster(host, PORT, LAN_POOL, deadline) as cluster:
            def take() -> Snapshot:
                return snapshot(client, host=host, broker=cluster.broker, queue=TEST_QUEUE,
                                worker_pid=cluster.worker.pid, run_dir=cluster.run_dir,
                                cache_dir=cluster.cache_dir, lan_pool=LAN_POOL)

            cold = take()
            workers = len(cold.procs) - 1
            # One test per pool process, so each has made its clients before the baseline.
            cluster.run([request(f"warm-up {i} x warm-up (tcp)", rust, rust, pass_id)
                         for i in range(workers)])
            before = take()
            planned = plan(args.tests)
            requests = []
            for i, test in enumerate(planned):
                dialer = {"pass": rust, "fail": stubs["fail"], "timeout": stubs["hang"]}[test.kind]
                requests.append(request(f"leak {i:03d} {test.kind} x rust ({test.transport})",
                                        dialer, rust, pass_id, transport=test.transport,
                                        timeout=FAILING_TIMEOUT_S if test.kind == "timeout" else 120))
            seconds, payloads = cluster.run(requests)
            after = take()
            load = os.getloadavg()
        final_containers, final_networks, final_volumes, _ = docker_objects(client, host)
        final_guard = guard_rules(LAN_POOL)
    finally:
        for kind in stubs:
            client.images.remove(f"holepunch-bench-{kind}", force=True)

    outcomes = Counter()
    wrong = []
    for test, payload in zip(planned, payloads, strict=True):
        record = payload["record"]
        outcomes[(test.kind, test.transport, record["status"], record.get("reason") == "timeout")] += 1
        meant = {"pass": record["status"] == "pass",
                 "fail": record["status"] == "fail" and record.get("reason") != "timeout",
                 "timeout": record["status"] == "fail" and record.get("reason") == "timeout"}
        if not meant[test.kind]:
            wrong.append(f"{record['name']}: {record['status']} ({record.get('reason')})")

    print(f"{args.tests} tests on one worker ({workers} at once, the default for "
          f"{os.cpu_count()} cores) in {seconds:.0f} s; load average {load[0]:.1f} / "
          f"{load[1]:.1f} (1/5 min) at the end")
    for (kind, transport, status, timeout), n in sorted(outcomes.items()):
        print(f"  meant {kind:7} {transport}: {n:3d} x {status}{' (timeout)' if timeout else ''}")
    show("cold (worker just started)", cold)
    show(f"before (after {workers} warm-up tests)", before)
    show(f"after {args.tests} tests (worker idle)", after)
    print(f"after the worker stopped: containers {final_containers} networks {final_networks} "
          f"volumes {final_volumes} guard rules {final_guard}")
    leaks = judge(before, after, args.tests)
    cold_networks = {role: n for role, n in cold.networks.items() if role != "lan"}  # warming
    if (final_containers, final_networks, final_volumes) != (cold.containers, cold_networks,
                                                            cold.volumes) \
            or final_guard > cold.guard_rules:
        leaks.append("the stopped worker's host has more objects or guard rules than before it "
                     "started")
    for leak in leaks:
        print(f"LEAK: {leak}")
    for line in wrong:
        print(f"WRONG OUTCOME: {line}")
    if leaks:
        return 1
    if wrong:
        return 2
    print("no leaks")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=100)
    parser.add_argument("--host", default=HOST, help="the worker's host name (its labels)")
    parser.add_argument("--budget", type=float, default=2400,
                        help="seconds; the bench stops (and cleans up) when they are spent")
    args = parser.parse_args()
    sys.exit(bounded_main(lambda deadline: run(args, deadline), args.budget))


if __name__ == "__main__":
    main()
