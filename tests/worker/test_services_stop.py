"""GlobalServices.stop on an engine two workers share (a fake engine here): it never removes the
Redis, relay or network while another host's tests are on the simulated internet."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker.errors import NotFound

import worker.services as services
from cluster import labels
from cluster.network import PUBLIC_NETWORK
from worker.services import REDIS_NAME, RELAY_NAME, GlobalServices


class FakeContainer:
    def __init__(self, name: str, labels: dict[str, str], networks: tuple[str, ...]):
        self.name, self.labels, self.networks, self.removed = name, labels, networks, False

    def remove(self, force: bool, v: bool) -> None:
        self.removed = True


class FakeNetwork:
    def __init__(self, labels: dict[str, str]):
        self.attrs, self.removed = {"Labels": labels}, False

    def remove(self) -> None:
        self.removed = True


class FakeContainers:
    def __init__(self, containers: list[FakeContainer]):
        self.all = containers

    def get(self, name: str) -> FakeContainer:
        for container in self.all:
            if container.name == name and not container.removed:
                return container
        raise NotFound(name)

    def list(self, all: bool, filters: dict,  # noqa: A002
             ignore_removed: bool = False) -> list[FakeContainer]:
        wanted = set(filters.get("label", []))
        return [c for c in self.all if not c.removed
                and filters.get("network", PUBLIC_NETWORK) in c.networks
                and wanted <= {f"{k}={v}" for k, v in c.labels.items()}]


class FakeNetworks:
    def __init__(self, network: FakeNetwork):
        self.network = network

    def get(self, name: str) -> FakeNetwork:
        assert name == PUBLIC_NETWORK
        return self.network


class FakeApi:
    """The low-level calls stop makes: this host has no LAN pool networks (tests/worker/test_lanpool)."""

    def networks(self, filters: dict) -> list[dict]:
        return []


class FakeDockerClient:
    def __init__(self, containers: list[FakeContainer], network: FakeNetwork):
        self.containers, self.networks = FakeContainers(containers), FakeNetworks(network)
        self.api = FakeApi()


@pytest.fixture
def engine(tmp_path: Path, monkeypatch):
    """Host a's Redis, relay and network on a fake engine; guard removals recorded, not run."""
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path))
    guard_removals: list[tuple[str, str]] = []
    monkeypatch.setattr(services, "remove_guard", lambda *args: guard_removals.append(args))
    redis = FakeContainer(REDIS_NAME, labels.global_labels("a"), (PUBLIC_NETWORK,))
    relay = FakeContainer(RELAY_NAME, labels.global_labels("a"), (PUBLIC_NETWORK,))
    return redis, relay, FakeNetwork(labels.global_labels("a")), guard_removals


def router(host: str) -> FakeContainer:
    return FakeContainer(f"hp-x-{host}_dialer_router_1", labels.test_labels(host),
                         (PUBLIC_NETWORK, "hp-x_lan_dialer"))


def test_another_hosts_running_tests_keep_the_shared_services(engine) -> None:
    redis, relay, network, guard_removals = engine
    client = FakeDockerClient([redis, relay, router("b"), router("a")], network)
    users = GlobalServices("a", client=client).stop()
    assert users == ["b"]
    assert not (redis.removed or relay.removed or network.removed) and not guard_removals


def test_with_only_its_own_or_no_tests_a_host_removes_its_services(engine) -> None:
    redis, relay, network, guard_removals = engine
    client = FakeDockerClient([redis, relay, router("a")], network)
    assert GlobalServices("a", client=client).stop() == []
    assert redis.removed and relay.removed and network.removed and len(guard_removals) == 1
