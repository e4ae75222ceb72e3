"""LAN subnets for concurrent tests on one host: a pool of /24 pairs handed out by lease.

Lease i gives the i-th pair of /24s in the pool. A lease is a file, created under a host-wide
lock, that records the holder's pid, so a lease left by a killed process is reclaimed. Teardown
releases it. No hashing, so no collisions. A pair that a network on the engine still uses (a
teardown that failed, a crashed run) is skipped: handing it out again would fail the next test.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import InfrastructureError
from cluster.lifetime import pid_alive
from worker.locks import host_lock, run_dir

DEFAULT_POOL = "10.201.0.0/16"


@dataclass(frozen=True)
class LanPair:
    index: int
    dialer: str
    listener: str


def lan_pair(pool: str, index: int) -> LanPair:
    """The index-th pair of /24 subnets in `pool`."""
    network = ipaddress.IPv4Network(pool)
    capacity = pair_capacity(pool)
    if not 0 <= index < capacity:
        raise ValueError(f"lease {index} outside pool {pool} ({capacity} pairs)")
    first = network.network_address + index * 2 * 256
    return LanPair(index, f"{first}/24", f"{first + 256}/24")


def pair_capacity(pool: str) -> int:
    network = ipaddress.IPv4Network(pool)
    if network.prefixlen > 23:
        raise ValueError(f"pool {pool} must be /23 or larger")
    return 2 ** (24 - network.prefixlen) // 2


def _overlaps_any(pair: LanPair, taken: list[ipaddress.IPv4Network]) -> bool:
    lans = (ipaddress.IPv4Network(pair.dialer), ipaddress.IPv4Network(pair.listener))
    return any(lan.overlaps(net) for lan in lans for net in taken)


def engine_subnets(client, skip: Callable[[dict[str, str]], bool] = lambda labels: False) -> list[str]:
    """The IPv4 subnets of every network on the engine (from its network list, one API call)
    but those whose labels `skip` names (the host's own pool networks: worker.lanpool)."""
    subnets = []
    for network in client.networks.list():
        if skip(network.attrs.get("Labels") or {}):
            continue
        for config in ((network.attrs.get("IPAM") or {}).get("Config") or []):
            subnet = config.get("Subnet", "")
            if subnet and ":" not in subnet:
                subnets.append(subnet)
    return subnets



class SubnetLeases:
    """The host's lease directory for one pool."""

    def __init__(self, pool: str = DEFAULT_POOL, directory: Path | None = None):
        self.pool = pool
        self.directory = directory or run_dir() / "leases" / pool.replace("/", "_")
        self.directory.mkdir(parents=True, exist_ok=True)

    def acquire(self, owner: str, occupied: Iterable[str] = ()) -> LanPair:
        """The first free pair whose subnets overlap none of `occupied` (the engine's networks)."""
        taken = [ipaddress.IPv4Network(subnet) for subnet in occupied]
        skipped = 0
        with host_lock("subnet-leases"):
            for index in range(pair_capacity(self.pool)):
                pair = lan_pair(self.pool, index)
                if _overlaps_any(pair, taken):
                    skipped += 1
                    continue
                path = self.directory / str(index)
                if self._stale(path):
                    path.unlink(missing_ok=True)
                if self._take(path, owner):
                    return pair
        raise InfrastructureError(
            f"no free LAN subnets in {self.pool}: {pair_capacity(self.pool) - skipped} tests "
            f"already hold one on this host, {skipped} pairs are used by networks left on the engine")

    def release(self, pair: LanPair) -> None:
        (self.directory / str(pair.index)).unlink(missing_ok=True)

    def reclaim_stale(self) -> list[int]:
        """Remove the leases whose holder is dead; returns their indices.

        Not every lease: another worker on this engine (an embedded `submit`, a re-run) may share
        this run directory, and wiping its live leases hands its subnets out twice.
        """
        reclaimed = []
        with host_lock("subnet-leases"):
            for path in self.directory.iterdir():
                if path.name.isdigit() and self._stale(path):
                    path.unlink(missing_ok=True)
                    reclaimed.append(int(path.name))
        return sorted(reclaimed)

    def held(self) -> list[int]:
        return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit())

    @staticmethod
    def _take(path: Path, owner: str) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()} {owner}\n")
        return True

    @staticmethod
    def _stale(path: Path) -> bool:
        try:
            pid = int(path.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return False
        return not pid_alive(pid)
