"""Benchmark: what a test's private Redis key space costs to start, two ways (worker.contracts).

    flock /tmp/holepunch-e2e.lock .venv/bin/python bench/contract_helpers.py [-n 8]

1. A Redis per test: redis-server in a container from the base image, ready when it answers PING.
2. The key-space proxy (router/keyspace-proxy) in a container from the router image, ready when
   a PING through it is answered by the global Redis; then one bare-key RPUSH through it lands
   in the global Redis under the prefix.
Each from `create` to ready, one after another on a small internal network of its own (our
labels, removed at the end). Prints the median and the spread of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import docker
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cluster.yamlio import read_yaml  # noqa: E402 - the repository is on sys.path now

LABELS = {"holepunch.owner": "bench", "holepunch.bench": "contract-helpers"}


def image_id(folder: str, tag: str, client: docker.DockerClient) -> str:
    path = REPO / folder / "image.yaml"
    if path.is_file():
        return "sha256:" + read_yaml(path)["imageID"]
    return client.images.get(tag).id


def until(probe, deadline_s: float = 20.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    raise TimeoutError("not ready")


def ip_of(container, network: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=8)
    args = parser.parse_args()
    client = docker.from_env()
    base = image_id("impl/base", "holepunch-base:bookworm", client)
    router = image_id("router", "holepunch-router", client)
    name = f"hp-bench-{uuid.uuid4().hex[:6]}"
    net = client.networks.create(name, driver="bridge", internal=True, labels=LABELS)
    started = []
    try:
        upstream = client.containers.run(base, ["redis-server", "--protected-mode", "no", "--save", ""],
                                         detach=True, network=name, labels=LABELS, init=True)
        started.append(upstream)
        global_ip = ip_of(upstream, name)
        until(lambda: redis.Redis(host=global_ip, socket_timeout=1).ping())
        per_test, proxy = [], []
        for i in range(args.n):
            t0 = time.monotonic()
            c = client.containers.run(base, ["redis-server", "--protected-mode", "no", "--save", ""],
                                      detach=True, network=name, labels=LABELS, init=True)
            started.append(c)
            ip = ip_of(c, name)
            until(lambda ip=ip: redis.Redis(host=ip, socket_timeout=1).ping())
            per_test.append(time.monotonic() - t0)

            t0 = time.monotonic()
            c = client.containers.run(router, detach=True, network=name, labels=LABELS, init=True,
                                      entrypoint=["/usr/local/bin/holepunch-keyspace-proxy"],
                                      environment={"KEY_PREFIX": f"bench-{i}:",
                                                   "UPSTREAM": f"{global_ip}:6379"})
            started.append(c)
            ip = ip_of(c, name)
            until(lambda ip=ip: redis.Redis(host=ip, socket_timeout=1).ping())  # through to the global one
            proxy.append(time.monotonic() - t0)
            redis.Redis(host=ip, socket_timeout=2).rpush("K", "v")
            assert redis.Redis(host=global_ip).lpop(f"bench-{i}:K") == b"v"
        for label, values in (("Redis per test", per_test), ("key-space proxy", proxy)):
            print(f"{label:16}: median {statistics.median(values) * 1000:.0f} ms "
                  f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}; n={len(values)})")
    finally:
        for c in started:
            c.remove(force=True)
        net.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
