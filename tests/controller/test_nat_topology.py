"""controller.nat.topology: the probe's layout per preset, without Docker."""

from __future__ import annotations

import pytest

from cluster.nat import PRESETS
from controller.nat.topology import free_subnet, plan


def test_single_router_layout():
    t = plan(PRESETS["full-cone"], "11.250.0.0/24", "10.250.0.0/24", None)
    assert [n.key for n in t.networks] == ["lan", "inet"]
    assert [n.internal for n in t.networks] == [False, True]
    (router,) = t.routers
    assert router.networks == (("inet", "11.250.0.10"), ("lan", "10.250.0.2"))
    assert router.environment == {"PUBLIC_SUBNET": "11.250.0.0/24", "LAN_SUBNET": "10.250.0.0/24",
                                  "DELAY_MS": "50", "NAT_MAPPING": "eim", "NAT_FILTERING": "eif",
                                  "NAT_PORTS": "preserve"}
    assert t.client.environment == {"ROUTER_ADDR": "10.250.0.2"}
    assert t.client.command[-4:] == ("11.250.0.100", "11.250.0.101", "3478", "3479")
    assert t.server.networks == (("inet", "11.250.0.100"),)


def test_default_preset_router_gets_only_todays_environment():
    t = plan(PRESETS["port-restricted-cone"], "11.250.0.0/24", "10.250.0.0/24", None)
    assert set(t.routers[0].environment) == {"PUBLIC_SUBNET", "LAN_SUBNET", "DELAY_MS"}


def test_cgnat_layout_two_routers_split_the_delay():
    t = plan(PRESETS["cgnat"], "11.250.0.0/24", "10.250.0.0/24", "100.127.0.0/24")
    assert [n.key for n in t.networks] == ["lan", "carrier", "inet"]
    carrier, home = t.routers  # started from the internet side in
    assert carrier.networks == (("inet", "11.250.0.10"), ("carrier", "100.127.0.2"))
    assert carrier.environment["LAN_SUBNET"] == "100.127.0.0/24"
    assert carrier.environment["NAT_PORTS"] == "random"
    assert home.networks == (("carrier", "100.127.0.3"), ("lan", "10.250.0.2"))
    assert home.environment == {"PUBLIC_SUBNET": "100.127.0.0/24", "LAN_SUBNET": "10.250.0.0/24",
                                "DELAY_MS": "25", "DEFAULT_VIA": "100.127.0.2"}
    assert int(carrier.environment["DELAY_MS"]) + int(home.environment["DELAY_MS"]) == 50
    with pytest.raises(ValueError):
        plan(PRESETS["cgnat"], "11.250.0.0/24", "10.250.0.0/24", None)


def test_free_subnet_skips_what_the_engine_uses():
    assert free_subnet("10.250.0.0/16", []) == "10.250.0.0/24"
    taken = ["10.250.0.0/24", "10.250.1.128/25", "172.17.0.0/16"]
    assert free_subnet("10.250.0.0/16", taken) == "10.250.2.0/24"
    with pytest.raises(LookupError):
        free_subnet("10.250.0.0/23", ["10.250.0.0/16"])
