"""Benchmark: one Docker host vs the two-host cluster of compose.cluster.yml, and host-loss recovery.

    .venv/bin/python bench/cluster.py [--visibility 90]

1. The same 12-test matrix (rust-v0.57, go-v0.51 tcp+quic; python-v0.8 tcp) on the embedded
   default (this engine, 4 tests at once) and on the cluster (two Docker-in-Docker hosts, 2 at
   once each: the same 4 slots). On one 2-core machine both hosts share the cores, so the
   cluster cannot be faster here; the ratio shows its overhead, not its scaling.
2. Recovery: an 8-test pass on the cluster with worker-b killed (SIGKILL) as soon as it runs a
   test; prints the time from the kill to the pass's end and the pass time without a kill.

Needs the images built (`holepunch-controller build rust-v0.57 go-v0.51 python-v0.8`). Brings the
cluster up with its own ports and takes it down at the end. Every step has a deadline.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cluster.yamlio import read_yaml  # noqa: E402 - the repository is on sys.path now
from controller.cluster_up import secrets_dir  # noqa: E402
CONTROLLER = str(Path(sys.executable).with_name("holepunch-controller"))
BROKER_PORT = 16391
# The URL with the broker's password, as `cluster up` writes it into its secrets folder.
BROKER = str(secrets_dir() / "broker-url")
TWELVE = ("rust-v0.57 x rust-v0.57|rust-v0.57 x go-v0.51|go-v0.51 x rust-v0.57|go-v0.51 x go-v0.51"
          "|python-v0.8 x python-v0.8|python-v0.8 x rust-v0.57|python-v0.8 x go-v0.51"
          "|rust-v0.57 x python-v0.8")
EIGHT = "rust-v0.57 x rust-v0.57|rust-v0.57 x go-v0.51|go-v0.51 x rust-v0.57|go-v0.51 x go-v0.51"


def run(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO)


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
    hosts = sorted({t.get("host") or "?" for t in tests})
    passed = sum(t["status"] == "pass" for t in tests)
    return f"{len(tests)} tests, {passed} passed, hosts {', '.join(hosts)}"


def running_on(host: str) -> bool:
    listing = run(["docker", "exec", f"holepunch-cluster_{host}_1", "docker", "ps", "--filter",
                   "label=holepunch.role=test", "--format", "{{.Names}}"], timeout=30)
    return "_dialer_1" in listing.stdout


def recovery(out: Path) -> tuple[float, float, dict]:
    proc = subprocess.Popen(submit(out, EIGHT, "--broker", BROKER), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=REPO)
    started = time.monotonic()
    try:
        while not running_on("worker-b"):
            if proc.poll() is not None or time.monotonic() - started > 300:
                sys.exit("worker-b never ran a test")
            time.sleep(0.5)
        run(["docker", "kill", "holepunch-cluster_worker-b_1"], timeout=60)
        killed = time.monotonic()
        proc.wait(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
    ended = time.monotonic()
    run(["docker", "start", "holepunch-cluster_worker-b_1"], timeout=60)
    return ended - killed, ended - started, read_yaml(out / "results.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visibility", type=int, default=150,
                        help="the cluster's visibility timeout (s): the wait before a killed host's tests move")
    args = parser.parse_args()
    (REPO / ".test-output").mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=REPO / ".test-output"))

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
        first, res = timed_pass(out / "cluster-cold", TWELVE, "--broker", BROKER)
        print(f"two hosts, first pass (fetches):  {first:6.1f} s  ({summary(res)})", flush=True)
        two_hosts, res = timed_pass(out / "cluster-warm", TWELVE, "--broker", BROKER)
        print(f"two hosts, warm (2+2 at once):    {two_hosts:6.1f} s  ({summary(res)})", flush=True)
        print(f"ratio one host / two hosts:       {one_host / two_hosts:6.2f}  (both hosts share "
              "this machine's 2 cores: overhead, not scaling)", flush=True)
        plain, res = timed_pass(out / "cluster-8", EIGHT, "--broker", BROKER)
        print(f"8-test pass, no host lost:        {plain:6.1f} s  ({summary(res)})", flush=True)
        after_kill, whole, res = recovery(out / "cluster-killed")
        print(f"8-test pass, worker-b killed:     {whole:6.1f} s  ({summary(res)}); "
              f"kill -> pass done {after_kill:.1f} s (visibility timeout {args.visibility} s)",
              flush=True)
    finally:
        run([CONTROLLER, "cluster", "down"], timeout=600)


if __name__ == "__main__":
    main()
