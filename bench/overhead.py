"""Benchmark: what the Celery task adds to one real test, and what running tests at once buys.

1. One real test (the newest rust image, tcp) ten times through `run_test` on a real worker and a
   real broker, against the same compose file run by hand (`docker-compose up` + `down`) ten times.
2. Eight tests one at a time (concurrency 1) against the same eight with concurrency 4.

Prints medians and ratios; asserts nothing. Run as root with the images built:
    .venv/bin/python bench/overhead.py [--runs 10]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cluster.app import configure  # noqa: E402
from cluster.models import ImageInfo, TestCase, Transport  # noqa: E402
from cluster.tasks import RunRequest, run_test_signature  # noqa: E402
from cluster.yamlio import load_model  # noqa: E402


def image(folder: str) -> ImageInfo:
    return load_model(ImageInfo, REPO / folder / "image.yaml")


def newest_rust() -> ImageInfo:
    return image(str(sorted((REPO / "impl/rust").glob("v*/image.yaml"))[-1].parent.relative_to(REPO)))


def request(name: str) -> RunRequest:
    rust = newest_rust()
    test = TestCase(name=name, dialer=rust.image_name, listener=rust.image_name,
                    transport=Transport.TCP)
    return RunRequest(pass_id="bench", test=test, dialer=rust, listener=rust,
                      router=image("router"), relay=image("rust-relay"), base=image("impl/base"))


class Cluster:
    """A broker and a worker of the given concurrency, for the length of a `with`."""

    def __init__(self, concurrency: int):
        self.concurrency = concurrency

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="hp-bench-")
        port = 16400 + self.concurrency
        self.redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                                       "--appendonly", "no", "--dir", self.tmp],
                                      stdout=subprocess.DEVNULL)
        broker = f"redis://127.0.0.1:{port}/0"
        self.worker = subprocess.Popen(
            [str(REPO / ".venv/bin/holepunch-worker"), "--broker", broker, "-n", "bench",
             "-c", str(self.concurrency), "--cache-dir", self.tmp, "--loglevel", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.app = configure(broker, 120)
        while not self.app.control.ping(timeout=1):
            time.sleep(0.2)
        return self

    def run(self, names: list[str]) -> tuple[float, list[dict]]:
        started = time.monotonic()
        results = [run_test_signature(request(n)).apply_async() for n in names]
        payloads = [r.get(timeout=600) for r in results]
        return time.monotonic() - started, payloads

    def __exit__(self, *exc):
        self.worker.terminate()
        self.worker.wait(180)
        self.redis.terminate()
        self.redis.wait(10)


def by_hand(compose_text: str, runs: int) -> list[float]:
    """The same compose file, up + down by hand (the relay address pushed as the task does)."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compose.yaml"
        path.write_text(compose_text)
        for i in range(runs):
            project = f"hp-bench-hand-{i}"
            started = time.monotonic()
            subprocess.run(["docker-compose", "-p", project, "-f", str(path), "up",
                            "--exit-code-from", "dialer", "--abort-on-container-exit",
                            "--timeout", "2"], capture_output=True, check=False)
            subprocess.run(["docker-compose", "-p", project, "-f", str(path), "down", "-v",
                            "--timeout", "2"], capture_output=True, check=False)
            times.append(time.monotonic() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    with Cluster(concurrency=1) as cluster:
        cluster.run(["warm-up x warm-up (tcp)"])  # global services, first image use
        task_times, last = [], None
        for i in range(args.runs):
            seconds, payloads = cluster.run([f"bench {i} x bench (tcp)"])
            task_times.append(seconds)
            last = payloads[0]
        # By hand, on the same host while its global services still run: same relay, same Redis.
        compose_text = last["compose"]
        redis_ip = compose_text.split("REDIS_ADDR: ")[1].split(":")[0]
        key = compose_text.split("TEST_KEY: ")[1].split()[0]
        relay = subprocess.run(["docker", "exec", "hole-punch-redis", "redis-cli", "GET",
                                "RELAY_TCP_ADDRESS"], capture_output=True, text=True).stdout.strip()
        hand_times = []
        for i in range(args.runs):
            subprocess.run(["docker", "exec", "hole-punch-redis", "redis-cli", "RPUSH",
                            f"{key}:RELAY_TCP_ADDRESS", relay, relay], capture_output=True)
            hand_times.extend(by_hand(compose_text, 1))
        serial, _ = cluster.run([f"serial {i} x serial (tcp)" for i in range(8)])
    with Cluster(concurrency=4) as cluster:
        cluster.run(["warm-up x warm-up (tcp)"])
        parallel, _ = cluster.run([f"parallel {i} x parallel (tcp)" for i in range(8)])

    task, hand = statistics.median(task_times), statistics.median(hand_times)
    print(f"one test through run_test (median of {args.runs}): {task:6.2f} s")
    print(f"the same compose file by hand (median of {args.runs}): {hand:6.2f} s")
    print(f"ratio task / by hand:                         {task / hand:6.2f}")
    print(f"8 tests, concurrency 1:                        {serial:6.1f} s")
    print(f"8 tests, concurrency 4:                        {parallel:6.1f} s")
    print(f"speed-up:                                      {serial / parallel:6.2f}x")
    print(f"(redis {redis_ip}; cores {os.cpu_count()})")


if __name__ == "__main__":
    main()
