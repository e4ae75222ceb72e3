"""LAN subnet leases: distinct pairs, released at teardown, stale ones reclaimed."""

import ipaddress
import os
from pathlib import Path

import pytest

from cluster.errors import InfrastructureError
from worker.subnets import SubnetLeases, engine_subnets, lan_pair, pair_capacity


def test_pairs_are_adjacent_disjoint_24s() -> None:
    assert lan_pair("10.201.0.0/16", 0).dialer == "10.201.0.0/24"
    assert lan_pair("10.201.0.0/16", 0).listener == "10.201.1.0/24"
    assert lan_pair("10.201.0.0/16", 127).listener == "10.201.255.0/24"
    assert pair_capacity("10.201.0.0/16") == 128
    nets = [ipaddress.IPv4Network(n) for i in range(128)
            for n in (lan_pair("10.201.0.0/16", i).dialer, lan_pair("10.201.0.0/16", i).listener)]
    assert len(set(nets)) == 256
    with pytest.raises(ValueError):
        lan_pair("10.201.0.0/16", 128)


def test_leases_are_exclusive_and_released(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path))
    leases = SubnetLeases("10.9.0.0/22", tmp_path / "leases")
    first, second = leases.acquire("a"), leases.acquire("b")
    assert (first.index, second.index) == (0, 1)
    with pytest.raises(InfrastructureError, match="no free LAN subnets"):
        leases.acquire("c")
    leases.release(first)
    assert leases.acquire("d").index == 0
    assert leases.held() == [0, 1]


def test_lease_of_a_dead_process_is_reclaimed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path))
    leases = SubnetLeases("10.9.0.0/23", tmp_path / "leases")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    (tmp_path / "leases" / "0").write_text(f"{pid} dead-test\n")
    assert leases.acquire("new").index == 0
    assert (tmp_path / "leases" / "0").read_text().startswith(f"{os.getpid()} new")


def test_worker_start_reclaims_only_dead_holders_leases(tmp_path: Path, monkeypatch) -> None:
    """A second worker on the same engine must not free the leases of a live one."""
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path))
    leases = SubnetLeases("10.9.0.0/22", tmp_path / "leases")
    live = leases.acquire("a test of a worker that still runs")  # held by this (live) process
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    (tmp_path / "leases" / "1").write_text(f"{pid} a test of a killed worker\n")
    assert leases.reclaim_stale() == [1]
    assert leases.held() == [live.index]
    assert leases.acquire("next").index == 1


def test_pairs_a_network_on_the_engine_still_uses_are_skipped(tmp_path: Path, monkeypatch) -> None:
    """A project whose teardown failed keeps its LANs: its pair must not fail the next test."""
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path))
    leases = SubnetLeases("10.9.0.0/22", tmp_path / "leases")
    assert leases.acquire("a", occupied=["10.9.1.0/24", "172.17.0.0/16"]).index == 1
    with pytest.raises(InfrastructureError, match="1 pairs are used by networks left on the engine"):
        leases.acquire("b", occupied=["10.9.0.0/24"])


class FakeNetwork:
    def __init__(self, *subnets: str) -> None:
        self.attrs = {"IPAM": {"Config": [{"Subnet": s} for s in subnets]}}


class FakeClient:
    """A fake Docker client: only `networks.list()`."""

    def __init__(self, networks: list[FakeNetwork]) -> None:
        self.networks = self
        self._networks = networks

    def list(self) -> list[FakeNetwork]:
        return self._networks


def test_engine_subnets_reads_ipv4_subnets_of_every_network() -> None:
    client = FakeClient([FakeNetwork("172.17.0.0/16"), FakeNetwork(),
                         FakeNetwork("10.201.4.0/24", "fd00::/64")])
    assert engine_subnets(client) == ["172.17.0.0/16", "10.201.4.0/24"]
