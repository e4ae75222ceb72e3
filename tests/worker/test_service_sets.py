"""Hosts sharing one engine (a fake engine here): service sets keyed by their images, slots that
never overlap, a start-up clean-up that removes only a dead process's tests, and global services
that stay while another live host runs."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
from docker.errors import NotFound

import worker.services as services
from cluster import labels
from cluster.network import PUBLIC_NETWORK
from worker import hosts
from worker.reaper import reap_abandoned
from worker.services import GlobalServices, choose_slot, fixed_addresses, set_key, slot_capacity

BASE_A, RELAY_A = "a" * 64, "b" * 64
RELAY_B = "c" * 64


class FakeContainer:
    def __init__(self, name: str, labels: dict[str, str]):
        self.name, self.labels, self.removed = name, labels, False
        self.id = name

    def remove(self, force: bool, v: bool) -> None:
        self.removed = True


class FakeNetwork:
    def __init__(self, name: str, labels: dict[str, str]):
        self.name, self.attrs, self.removed = name, {"Labels": labels}, False

    def remove(self) -> None:
        self.removed = True


def _matches(item_labels: dict[str, str], filters: dict) -> bool:
    return set(filters.get("label", [])) <= {f"{k}={v}" for k, v in item_labels.items()}


class FakeApi:
    def __init__(self, engine: FakeEngine):
        self.engine = engine

    def containers(self, all: bool, filters: dict) -> list[dict]:  # noqa: A002
        return [{"Id": c.name, "Names": [f"/{c.name}"], "Labels": c.labels}
                for c in self.engine.all if not c.removed and _matches(c.labels, filters)]

    def remove_container(self, container_id: str, force: bool, v: bool) -> None:
        for container in self.engine.all:
            if container.name == container_id and not container.removed:
                container.removed = True
                return
        raise NotFound(container_id)

    def networks(self, filters: dict) -> list[dict]:
        return [{"Id": n.name, "Name": n.name, "Labels": n.attrs["Labels"]}
                for n in self.engine.networks_ if not n.removed
                and _matches(n.attrs["Labels"], filters)]

    def remove_network(self, network_id: str) -> None:
        for network in self.engine.networks_:
            if network.name == network_id and not network.removed:
                network.removed = True
                return
        raise NotFound(network_id)


class FakeContainers:
    def __init__(self, engine: FakeEngine):
        self.engine = engine

    def list(self, all: bool, filters: dict, ignore_removed: bool = False):  # noqa: A002
        return [c for c in self.engine.all if not c.removed and _matches(c.labels, filters)
                and (filters.get("network") is None or c.labels.get(labels.ROLE) == "test")]


class FakeNetworks:
    def __init__(self, engine: FakeEngine):
        self.engine = engine

    def get(self, name: str) -> FakeNetwork:
        for network in self.engine.networks_:
            if network.name == name and not network.removed:
                return network
        raise NotFound(name)

    def list(self, filters: dict) -> list[FakeNetwork]:
        return [n for n in self.engine.networks_ if not n.removed
                and _matches(n.attrs["Labels"], filters)]


class FakeEngine:
    """Containers and networks with labels; removals recorded."""

    def __init__(self, containers: list[FakeContainer] = (), networks: list[FakeNetwork] = ()):
        self.all, self.networks_ = list(containers), list(networks)
        self.api, self.containers = FakeApi(self), FakeContainers(self)
        self.networks = FakeNetworks(self)


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path))
    monkeypatch.setattr(services, "remove_guard", lambda *args: None)
    return tmp_path


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_set_is_keyed_by_both_images() -> None:
    assert set_key(BASE_A, RELAY_A) == set_key(f"sha256:{BASE_A}", RELAY_A)
    assert set_key(BASE_A, RELAY_A) != set_key(BASE_A, RELAY_B)
    assert set_key(BASE_A, RELAY_A) != set_key(RELAY_B, RELAY_A)


def test_slots_never_overlap_and_stay_below_the_engines_range() -> None:
    for subnet in ("11.11.0.0/16", "11.11.0.0/24", "11.11.0.0/28"):
        addresses = [ip for slot in range(slot_capacity(subnet))
                     for ip in fixed_addresses(subnet, slot)[:2]]
        assert len(addresses) == len(set(addresses)) >= 2
        dynamic = ipaddress.IPv4Network(fixed_addresses(subnet)[2])
        gateway = ipaddress.IPv4Network(subnet).network_address + 1
        assert all(ipaddress.IPv4Address(ip) not in dynamic and ipaddress.IPv4Address(ip) != gateway
                   for ip in addresses)
    assert fixed_addresses("11.11.0.0/16")[:2] == ("11.11.0.2", "11.11.0.3")
    with pytest.raises(ValueError, match="slot 3 outside"):
        fixed_addresses("11.11.0.0/28", 3)


def test_choose_slot_keeps_a_keys_slot_and_takes_the_lowest_free() -> None:
    assert choose_slot("k2", {0: "k1", 1: "k2"}, 4) == 1
    assert choose_slot("k3", {0: "k1", 2: "k2"}, 4) == 1
    assert choose_slot("k3", {0: "k1", 1: "k2"}, 2) is None


def test_two_image_pairs_get_two_sets_and_one_pair_one() -> None:
    # An older layout's unkeyed Redis at slot 0's addresses, still running.
    legacy = FakeContainer("hole-punch-redis", labels.global_labels("old"))
    engine = FakeEngine([legacy])
    a, b = GlobalServices("a", client=engine), GlobalServices("b", client=engine)
    slot_a = a.reserve(set_key(BASE_A, RELAY_A))
    slot_b = b.reserve(set_key(BASE_A, RELAY_B))
    assert 0 not in (slot_a, slot_b) and slot_a != slot_b
    assert b.reserve(set_key(BASE_A, RELAY_A)) == slot_a


def _global(host: str, key: str, slot: int) -> FakeContainer:
    return FakeContainer(f"hole-punch-redis-{key}", labels.global_labels(host, key, slot))


def test_a_live_host_keeps_every_set_and_the_network_until_the_last_one_stops() -> None:
    sets = [_global("a", "k1", 0), _global("b", "k2", 1)]
    network = FakeNetwork(PUBLIC_NETWORK, labels.global_labels("a"))
    engine = FakeEngine(sets, [network])
    hosts.register("a")
    hosts.register("b")  # this process is alive: so is host b
    assert GlobalServices("a", client=engine).stop() == ["b"]
    assert not any(c.removed for c in sets) and not network.removed
    hosts.unregister("a")
    hosts.unregister("b")
    assert GlobalServices("b", client=engine).stop() == []
    assert all(c.removed for c in sets) and network.removed


def test_a_dead_hosts_registration_does_not_keep_the_services() -> None:
    sets = [_global("a", "k1", 0)]
    engine = FakeEngine(sets, [FakeNetwork(PUBLIC_NETWORK, labels.global_labels("a"))])
    hosts.register("killed", pid=dead_pid())
    assert GlobalServices("b", client=engine).stop() == []
    assert sets[0].removed and hosts.live_hosts() == set()


def _test_container(host: str, project: str, owner: tuple[str, str]) -> FakeContainer:
    return FakeContainer(f"{project}_dialer_1", {**labels.test_labels(host, owner),
                                                 "com.docker.compose.project": project})


def test_start_up_clean_up_removes_only_what_dead_processes_left() -> None:
    here = hosts.machine()
    dead = _test_container("h-embedded-1", "hp-dead", (here, str(dead_pid())))
    live = _test_container("h-embedded-2", "hp-live", (here, str(hosts.owner_pid())))
    elsewhere = _test_container("other", "hp-other", ("another-machine/ns", str(dead_pid())))
    unlabelled = FakeContainer("hp-old_dialer_1", {**labels.test_labels("old"),
                                                   "com.docker.compose.project": "hp-old"})
    lan = FakeNetwork("hp-dead_lan_dialer", {**dead.labels})
    engine = FakeEngine([dead, live, elsewhere, unlabelled], [lan])
    removed = reap_abandoned(engine)
    assert dead.removed and lan.removed and set(removed) == {"container hp-dead_dialer_1",
                                                             "network hp-dead_lan_dialer"}
    assert not (live.removed or elsewhere.removed or unlabelled.removed)
