"""The host's LAN pool networks (worker.lanpool) on a fake engine: made once per lease and kept,
nothing of a previous test attached when the next one takes them, gone with the host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from docker.errors import APIError, NotFound

import worker.services as services
from cluster import labels
from cluster.errors import InfrastructureError
from worker import hosts
from worker.compose import PUBLIC_NETWORK, TestSpec, compose_for
from worker.lanpool import LanPool, network_name, reap_lans
from worker.project import plan_project
from worker.reaper import reap_abandoned
from worker.services import GlobalServices
from worker.subnets import SubnetLeases

POOL = "10.9.0.0/22"


def _labelled(item: dict[str, str], filters: dict | None) -> bool:
    return set((filters or {}).get("label", [])) <= {f"{k}={v}" for k, v in item.items()}


class FakeObject:
    """What the high-level lists give: `.attrs`."""

    def __init__(self, attrs: dict) -> None:
        self.attrs = attrs


class FakeLanApi:
    """A fake engine's low-level API: networks with the containers attached to them, by name.
    Only the calls worker.lanpool, the reaper and GlobalServices.stop make; creates and
    removals recorded."""

    def __init__(self) -> None:
        self.nets: dict[str, dict] = {}
        self.containers_: dict[str, dict] = {}   # id -> {"labels", "networks"}
        self.created: list[str] = []
        self.removed: list[str] = []

    # the engine's own doings, for the tests
    def add_network(self, name: str, subnet: str, net_labels: dict[str, str]) -> None:
        self.nets[name] = {"Name": name, "Id": name, "Labels": dict(net_labels), "Driver": "bridge",
                           "Internal": False, "IPAM": {"Config": [{"Subnet": subnet}]},
                           "Options": {"com.docker.network.bridge.enable_ip_masquerade": "false"}}

    def attach(self, container: str, network: str, container_labels: dict[str, str]) -> None:
        self.containers_.setdefault(container, {"labels": container_labels, "networks": set()})
        self.containers_[container]["networks"].add(network)

    def attached(self, network: str) -> list[str]:
        return sorted(c for c, spec in self.containers_.items() if network in spec["networks"])

    # the calls
    def inspect_network(self, name: str) -> dict:
        if name not in self.nets:
            raise NotFound(name)
        return {**self.nets[name], "Containers": {c: {"Name": c} for c in self.attached(name)}}

    def create_network(self, name: str, driver: str, options: dict, ipam, labels: dict,
                       check_duplicate: bool) -> None:
        assert name not in self.nets and check_duplicate and driver == "bridge"
        self.add_network(name, ipam["Config"][0]["Subnet"], labels)
        self.nets[name]["Options"] = dict(options)
        self.created.append(name)

    def remove_network(self, name: str) -> None:
        if name not in self.nets:
            raise NotFound(name)
        if self.attached(name):
            raise APIError(f"network {name} has active endpoints")
        del self.nets[name]
        self.removed.append(name)

    def networks(self, filters: dict | None = None) -> list[dict]:
        return [dict(n) for n in self.nets.values() if _labelled(n["Labels"], filters)]

    def containers(self, all: bool, filters: dict) -> list[dict]:  # noqa: A002
        network = filters.get("network")
        return [{"Id": c, "Names": [f"/{c}"], "Labels": spec["labels"]}
                for c, spec in self.containers_.items()
                if (network is None or network in spec["networks"])
                and _labelled(spec["labels"], filters)]

    def remove_container(self, container: str, force: bool, v: bool) -> None:
        if self.containers_.pop(container, None) is None:
            raise NotFound(container)


class FakeNetworks:
    def __init__(self, api: FakeLanApi) -> None:
        self.api = api

    def list(self, filters: dict | None = None) -> list[FakeObject]:
        return [FakeObject(n) for n in self.api.nets.values() if _labelled(n["Labels"], filters)]

    def get(self, name: str):
        raise NotFound(name)  # no simulated internet on this engine


class FakeContainers:
    def list(self, all: bool = False, filters: dict | None = None,  # noqa: A002
             ignore_removed: bool = False) -> list:
        return []  # no global services, no tests on the simulated internet


class FakeLanEngine:
    """A fake Docker client over FakeLanApi."""

    def __init__(self) -> None:
        self.api = FakeLanApi()
        self.networks, self.containers = FakeNetworks(self.api), FakeContainers()


@pytest.fixture
def engine(tmp_path: Path, monkeypatch) -> FakeLanEngine:
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path))
    monkeypatch.setattr(services, "remove_guard", lambda *args: None)
    return FakeLanEngine()


def pool(engine: FakeLanEngine, host: str = "a") -> LanPool:
    return LanPool(host, lambda: engine)  # type: ignore[arg-type, return-value]


def leases(tmp_path: Path) -> SubnetLeases:
    return SubnetLeases(POOL, tmp_path / "leases")


def test_a_lease_makes_its_two_networks_once_and_the_next_test_reuses_them(engine,
                                                                           tmp_path) -> None:
    lans = pool(engine)
    pair, networks = lans.lease(leases(tmp_path), "first")
    assert (networks.dialer, networks.listener) == (network_name("a", "10.9.0.0/24"),
                                                    network_name("a", "10.9.1.0/24"))
    made = engine.api.nets[networks.dialer]
    assert made["Labels"] == labels.lan_labels("a", "10.9.0.0/24", hosts.owner())
    assert made["Options"] == {"com.docker.network.bridge.enable_ip_masquerade": "false"}
    leases(tmp_path).release(pair)
    again, same = lans.lease(leases(tmp_path), "second")
    assert again == pair and same == networks  # its own networks do not make the pair taken
    assert sorted(engine.api.created) == sorted([networks.dialer, networks.listener])
    assert not engine.api.removed  # (the two are made at once: in either order)


def test_what_a_previous_test_left_attached_is_removed_before_the_next_one_starts(engine,
                                                                                  tmp_path) -> None:
    """A teardown that failed still releases its lease: its containers must not meet the next
    test on the same LAN."""
    lans = pool(engine)
    pair, networks = lans.lease(leases(tmp_path), "first")
    engine.api.attach("hp-first_dialer_1", networks.dialer, labels.test_labels("a"))
    engine.api.attach("hp-first_dialer_router_1", networks.dialer, labels.test_labels("a"))
    leases(tmp_path).release(pair)
    _, again = lans.lease(leases(tmp_path), "second")
    assert again == networks
    assert engine.api.attached(networks.dialer) == [] and engine.api.attached(networks.listener) == []


def test_a_container_attached_that_is_no_test_fails_the_lease_and_frees_it(engine,
                                                                         tmp_path) -> None:
    lans = pool(engine)
    pair, networks = lans.lease(leases(tmp_path), "first")
    engine.api.attach("someone-elses", networks.listener, {"purpose": "debugging"})
    leases(tmp_path).release(pair)
    with pytest.raises(InfrastructureError, match="no test's: someone-elses"):
        lans.lease(leases(tmp_path), "second")
    assert leases(tmp_path).held() == []


def test_another_hosts_pool_networks_are_taken_a_dead_process_of_this_host_is_made_anew(
        engine, tmp_path) -> None:
    engine.api.add_network(network_name("b", "10.9.0.0/24"), "10.9.0.0/24",
                       labels.lan_labels("b", "10.9.0.0/24", hosts.owner()))
    dead = (hosts.machine(), str(dead_pid()))
    old = network_name("a", "10.9.2.0/24")
    engine.api.add_network(old, "10.9.2.0/24", labels.lan_labels("a", "10.9.2.0/24", dead))
    pair, networks = pool(engine).lease(leases(tmp_path), "first")
    assert pair.index == 1 and networks.dialer == old  # pair 0 is b's; a's own dead one is reused
    assert old in engine.api.removed  # ... made anew: labelled by this process
    assert engine.api.nets[old]["Labels"][labels.HOST_PID] == hosts.owner()[1]


def test_the_compose_document_names_the_pool_networks_as_external() -> None:
    spec = TestSpec(test_name="a x b (tcp)", pass_id="p", dialer_image="sha256:" + "1" * 64,
                    listener_image="sha256:" + "2" * 64, router_image="sha256:" + "3" * 64,
                    transport="tcp", redis_addr="11.11.0.2:6379", test_key="k",
                    public_subnet="11.11.0.0/16", dialer_lan="10.9.0.0/24",
                    listener_lan="10.9.1.0/24", dialer_lan_network="pool-d",
                    listener_lan_network="pool-l")
    document = compose_for(spec)
    assert document["networks"]["lan_dialer"] == {"external": True, "name": "pool-d"}
    assert document["networks"]["lan_listener"] == {"external": True, "name": "pool-l"}
    routers = document["services"]["dialer_router"]["networks"]
    assert routers["lan_dialer"] == {"ipv4_address": "10.9.0.2"}  # its fixed address, as before
    plan = plan_project(spec.project, document)
    made = {n.name for n in plan.networks if not n.external}
    assert made == set() and PUBLIC_NETWORK in {n.name for n in plan.networks}


def test_the_hosts_shutdown_removes_its_pool_networks_even_while_another_host_lives(
        engine, tmp_path) -> None:
    pair, networks = pool(engine, "a").lease(leases(tmp_path), "a's test")
    engine.api.attach("hp-leaked_dialer_1", networks.dialer, labels.test_labels("a"))
    _, others = pool(engine, "b").lease(leases(tmp_path), "b's test")
    hosts.register("b")  # this process is alive: so is host b, which keeps the global services
    try:
        GlobalServices("a", client=engine).stop()  # type: ignore[arg-type]
    finally:
        hosts.unregister("b")
    assert networks.dialer not in engine.api.nets and networks.listener not in engine.api.nets
    assert others.dialer in engine.api.nets and others.listener in engine.api.nets  # b's own stay
    assert sorted(reap_lans(engine, "b")) == sorted(  # type: ignore[arg-type]
        [f"network {others.dialer}", f"network {others.listener}"])
    assert engine.api.nets == {}


def test_a_dead_processs_pool_networks_are_reaped_by_any_host_a_live_ones_stay(engine) -> None:
    dead = network_name("gone", "10.9.0.0/24")
    engine.api.add_network(dead, "10.9.0.0/24",
                       labels.lan_labels("gone", "10.9.0.0/24", (hosts.machine(), str(dead_pid()))))
    engine.api.attach("hp-gone_dialer_1", dead, labels.test_labels("gone"))
    live = network_name("here", "10.9.2.0/24")
    engine.api.add_network(live, "10.9.2.0/24", labels.lan_labels("here", "10.9.2.0/24", hosts.owner()))
    removed = reap_abandoned(engine)  # type: ignore[arg-type]
    assert removed == ["container hp-gone_dialer_1", f"network {dead}"]
    assert list(engine.api.nets) == [live]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_warming_makes_the_networks_of_free_leases_and_frees_them(engine, tmp_path) -> None:
    held = SubnetLeases("10.9.0.0/21", tmp_path / "leases")
    busy = held.acquire("a test running meanwhile")
    assert pool(engine).warm(held, 2) == 2
    assert held.held() == [busy.index]  # the warmed leases are free again, the test's still held
    assert sorted(engine.api.created) == sorted(network_name("a", s) for s in (
        "10.9.2.0/24", "10.9.3.0/24", "10.9.4.0/24", "10.9.5.0/24"))
    held.release(busy)
    _, networks = pool(engine).lease(held, "next")  # lease 0: made by the test itself
    _, warmed = pool(engine).lease(held, "after")
    assert warmed.dialer == network_name("a", "10.9.2.0/24")
    assert len(engine.api.created) == 6  # lease 1 came warm


def test_warming_a_full_pool_makes_nothing_and_holds_nothing(engine, tmp_path) -> None:
    held = SubnetLeases("10.9.0.0/23", tmp_path / "small")
    held.acquire("the only pair")
    assert pool(engine).warm(held, 2) == 0 and held.held() == [0]
