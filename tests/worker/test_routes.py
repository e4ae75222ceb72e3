"""Stray routes into the simulated internet: which are orphans to remove, which are errors."""

from __future__ import annotations

import pytest

from cluster.errors import InfrastructureError
from worker import routes
from worker.routes import StrayRoute, stray_routes

SUBNET = "11.11.0.0/16"
ROUTES = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
    {"dst": "11.11.0.0/16", "dev": "br-1bb648311bad", "flags": ["linkdown"]},  # a dead engine's
    {"dst": "11.11.0.0/16", "dev": "br-f492f759252c"},  # this engine's hole-punch-network
    {"dst": "11.11.7.0/24", "dev": "hp-hand0"},  # made by hand, inside the subnet
    {"dst": "10.201.0.0/24", "dev": "br-d7066e9e7588"},  # a LAN: not the host's concern
    {"dst": "11.0.0.0/8", "dev": "br-0123456789ab"},  # wider, so overlapping
]


def test_only_devices_outside_the_engine_that_hold_the_subnet_are_strays() -> None:
    strays = stray_routes(ROUTES, SUBNET, {"br-f492f759252c", "docker0"},
                          {"br-0123456789ab": 2})
    assert strays == [StrayRoute("11.11.0.0/16", "br-1bb648311bad", orphan=True),
                      StrayRoute("11.11.7.0/24", "hp-hand0", orphan=False),
                      StrayRoute("11.0.0.0/8", "br-0123456789ab", orphan=False)]  # has ports


def test_nothing_is_stray_when_the_engine_owns_every_route() -> None:
    assert stray_routes(ROUTES[:3], SUBNET, {"br-1bb648311bad", "br-f492f759252c"}, {}) == []
    assert stray_routes([{"dst": "fd00::/64", "dev": "eth0"}], SUBNET, set(), {}) == []


class FakeNetwork:
    def __init__(self, id_: str, name: str, options: dict | None = None):
        self.id, self.name, self.attrs = id_, name, {"Options": options or {}}


class FakeClient:
    """A fake engine: only `networks.list()`."""

    def __init__(self, networks):
        self.networks = self
        self._networks = networks

    def list(self):
        return self._networks


def test_the_engine_devices_are_its_networks_bridges() -> None:
    client = FakeClient([FakeNetwork("f492f759252c" + "0" * 52, "hole-punch-network"),
                         FakeNetwork("8cc017ee6090" + "0" * 52, "bridge"),
                         FakeNetwork("aa" * 32, "named", {"com.docker.network.bridge.name": "hp0"})])
    assert routes.engine_devices(client) == {"br-f492f759252c", "docker0", "hp0"}


def test_any_stray_stops_the_worker_with_its_name_and_the_way_out(monkeypatch) -> None:
    monkeypatch.setattr(routes, "_host_routes", lambda: ROUTES[:3])
    monkeypatch.setattr(routes, "_ports", lambda device: 0)
    client = FakeClient([FakeNetwork("f492f759252c" + "0" * 52, "hole-punch-network")])
    with pytest.raises(InfrastructureError, match=r"11\.11\.0\.0/16 is routed through "
                                                  r"br-1bb648311bad.*left by a stopped Docker "
                                                  r"engine.*ip link delete br-1bb648311bad"):
        routes.check_routes(client, SUBNET)

    monkeypatch.setattr(routes, "_host_routes", lambda: [ROUTES[2], ROUTES[3]])
    with pytest.raises(InfrastructureError, match=r"11\.11\.7\.0/24 is routed through hp-hand0"
                                                  r".*made by hand"):
        routes.check_routes(client, SUBNET)

    monkeypatch.setattr(routes, "_host_routes", lambda: [ROUTES[0], ROUTES[2], ROUTES[4]])
    routes.check_routes(client, SUBNET)  # only the engine's own: nothing to say
