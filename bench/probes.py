"""What a worker host holds at one moment: the figures bench/leaks.py compares before and after.

Only reads: Docker objects by our labels, the host's subnet leases, the global Redis, the
broker, /proc for the worker's processes, the worker's cache and /tmp, the host guard's rules.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import docker
import redis

from cluster.labels import HOST, OWNER, OWNER_VALUE, ROLE
from cluster.network import PUBLIC_NETWORK, REDIS_PORT
from worker.guard import COMMENT as GUARD_COMMENT
from worker.services import REDIS_NAME

GLOBAL_KEYS = {"RELAY_TCP_ADDRESS", "RELAY_QUIC_ADDRESS"}  # the relay's own, read by every test
IMAGE_TMP_PREFIX = "holepunch-image-"  # worker.images' temporary download directories


@dataclass(frozen=True)
class Proc:
    pid: int
    rss_kib: int
    fds: int


@dataclass
class Snapshot:
    containers: dict[str, int]      # role -> count (our labels, this host)
    networks: dict[str, int]
    volumes: dict[str, int]
    dangling_volumes: int           # anonymous ones carry no label: the engine's whole count
    leases: list[str]
    test_keys: list[str]            # keys in the global Redis that are not the relay's own
    broker: dict[str, int]
    procs: list[Proc]
    compose_files: int              # in the worker's cache (content-addressed, kept by design)
    partial_files: int              # half-written cache files (atomic_write's .tmp)
    image_tmp_dirs: int
    guard_rules: int
    notes: list[str] = field(default_factory=list)

    @property
    def rss_kib(self) -> int:
        return sum(p.rss_kib for p in self.procs)

    @property
    def fds(self) -> int:
        return sum(p.fds for p in self.procs)


def _by_role(labels: list[dict | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for each in labels:
        role = (each or {}).get(ROLE, "?")
        counts[role] = counts.get(role, 0) + 1
    return counts


def docker_objects(client: docker.DockerClient, host: str) -> tuple[dict, dict, dict, int]:
    filters = {"label": [f"{OWNER}={OWNER_VALUE}", f"{HOST}={host}"]}
    containers = client.containers.list(all=True, filters=filters, ignore_removed=True)
    networks = client.networks.list(filters=filters)
    volumes = client.volumes.list(filters=filters)
    dangling = len(client.volumes.list(filters={"dangling": True}))
    return (_by_role([c.labels for c in containers]),
            _by_role([n.attrs.get("Labels") for n in networks]),
            _by_role([v.attrs.get("Labels") for v in volumes]), dangling)


def global_redis_keys(client: docker.DockerClient, host: str) -> tuple[list[str], list[str]]:
    """Keys of this host's global Redis that no test should leave; notes if it cannot be read."""
    found = [c for c in client.containers.list(filters={"label": [
        f"{OWNER}={OWNER_VALUE}", f"{ROLE}=global", f"{HOST}={host}"]})
        if c.name.startswith(f"{REDIS_NAME}-")]  # one per service set (worker.services)
    if not found:
        return [], [f"no global Redis of host {host!r} running"]
    container = found[0]
    ip = container.attrs["NetworkSettings"]["Networks"][PUBLIC_NETWORK]["IPAddress"]
    store = redis.Redis(host=ip, port=REDIS_PORT, socket_timeout=5, decode_responses=True)
    try:
        return sorted(k for k in store.scan_iter("*") if k not in GLOBAL_KEYS), []
    finally:
        store.close()


def broker_state(url: str, queue: str) -> dict[str, int]:
    store = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return {"queued": store.llen(queue), "unacked": store.hlen("unacked"),
                "results": sum(1 for _ in store.scan_iter("celery-task-meta-*"))}
    finally:
        store.close()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split()]


def process_tree(pid: int, only: str = "holepunch-worker") -> list[Proc]:
    """The worker's main process and its pool processes (not the docker-compose runs)."""
    found = []
    for each in [pid, *_children(pid)]:
        try:
            cmdline = Path(f"/proc/{each}/cmdline").read_bytes().decode(errors="replace")
            if only not in cmdline:
                continue
            status = Path(f"/proc/{each}/status").read_text()
            rss = next(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:"))
            found.append(Proc(each, rss, len(os.listdir(f"/proc/{each}/fd"))))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def cache_files(cache_dir: Path) -> tuple[int, int]:
    folder = cache_dir / "docker-compose"
    if not folder.is_dir():
        return 0, 0
    names = os.listdir(folder)
    return (sum(n.endswith(".yaml") for n in names),
            sum(n.endswith(".tmp") for n in names))


def image_tmp_dirs() -> int:
    return sum(name.startswith(IMAGE_TMP_PREFIX) for name in os.listdir(tempfile.gettempdir()))


def guard_rules(lan_pool: str) -> int:
    rules = subprocess.run(["iptables", "-w", "5", "-S", "DOCKER-USER"], capture_output=True,
                           text=True, check=False).stdout
    return sum(GUARD_COMMENT in line and lan_pool in line for line in rules.splitlines())


def leases(run_dir: Path, lan_pool: str) -> list[str]:
    folder = run_dir / "leases" / lan_pool.replace("/", "_")
    if not folder.is_dir():
        return []
    return sorted(f"{p.name}: {p.read_text().strip()}" for p in folder.iterdir())


def snapshot(client: docker.DockerClient, *, host: str, broker: str, queue: str, worker_pid: int,
             run_dir: Path, cache_dir: Path, lan_pool: str) -> Snapshot:
    containers, networks, volumes, dangling = docker_objects(client, host)
    keys, notes = global_redis_keys(client, host)
    compose_files, partial = cache_files(cache_dir)
    return Snapshot(containers, networks, volumes, dangling, leases(run_dir, lan_pool), keys,
                    broker_state(broker, queue), process_tree(worker_pid), compose_files,
                    partial, image_tmp_dirs(), guard_rules(lan_pool), notes)
