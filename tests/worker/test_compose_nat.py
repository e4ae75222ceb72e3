"""compose_for with NAT presets: each side's router(s) from its preset, cgnat's two routers."""

from __future__ import annotations

import pytest

from cluster.errors import ConfigError
from cluster.nat import PRESETS
from worker.compose import PUBLIC_NETWORK, TestSpec, compose_for

NAT_KEYS = {"NAT_MAPPING", "NAT_FILTERING", "NAT_PORTS"}


def spec(**changes) -> TestSpec:
    base = dict(test_name="go-v0.51 x go-v0.51 (tcp) [full-cone x symmetric]", pass_id="p",
                dialer_image="a" * 64, listener_image="b" * 64, router_image="c" * 64,
                transport="tcp", redis_addr="11.11.0.10:6379", test_key="k",
                public_subnet="11.11.0.0/16", dialer_lan="10.201.0.0/24",
                listener_lan="10.201.1.0/24", holders_for_ours=False)
    base.update(changes)
    return TestSpec(**base)


def test_the_default_pair_sets_no_nat_knob() -> None:
    services = compose_for(spec())["services"]
    assert set(services) == {"dialer", "listener", "dialer_router", "listener_router"}
    for name in ("dialer_router", "listener_router"):
        assert not NAT_KEYS & set(services[name]["environment"])


@pytest.mark.parametrize("nat", [n for n in PRESETS if len(PRESETS[n].routers) == 1])
def test_a_one_router_preset_gives_its_knobs_to_that_side_only(nat) -> None:
    services = compose_for(spec(listener_nat=nat))["services"]
    env = services["listener_router"]["environment"]
    assert {k: env[k] for k in NAT_KEYS if k in env} == PRESETS[nat].behaviour.router_env()
    assert env["DELAY_MS"] == "50"
    assert not NAT_KEYS & set(services["dialer_router"]["environment"])


def test_symmetric_and_full_cone_knobs() -> None:
    services = compose_for(spec(dialer_nat="full-cone", listener_nat="symmetric"))["services"]
    assert services["dialer_router"]["environment"]["NAT_FILTERING"] == "eif"
    assert services["listener_router"]["environment"]["NAT_MAPPING"] == "apdm"
    assert services["listener_router"]["environment"]["NAT_PORTS"] == "random"


def test_cgnat_is_a_home_router_behind_a_carrier_router() -> None:
    doc = compose_for(spec(dialer_nat="cgnat", dialer_carrier="100.96.4.0/24",
                           public_allow=("11.11.0.10",)))
    services, networks = doc["services"], doc["networks"]
    home, carrier = services["dialer_router"], services["dialer_carrier"]
    assert networks["carrier_dialer"]["ipam"]["config"] == [{"subnet": "100.96.4.0/24"}]
    # the home router: LAN inside, carrier network outside, default route via the carrier router
    assert home["networks"] == {"carrier_dialer": {"ipv4_address": "100.96.4.3"},
                                "lan_dialer": {"ipv4_address": "10.201.0.2"}}
    assert home["environment"]["PUBLIC_SUBNET"] == "100.96.4.0/24"
    assert home["environment"]["DEFAULT_VIA"] == "100.96.4.2"
    assert home["depends_on"] == {"dialer_carrier": {"condition": "service_healthy"}}
    assert "PUBLIC_ALLOW" not in home["environment"]
    # the carrier router: carrier network inside, the internet outside, random ports
    assert carrier["networks"] == {PUBLIC_NETWORK: {}, "carrier_dialer": {"ipv4_address": "100.96.4.2"}}
    assert carrier["environment"]["LAN_SUBNET"] == "100.96.4.0/24"
    assert carrier["environment"]["NAT_PORTS"] == "random"
    assert carrier["environment"]["PUBLIC_ALLOW"] == "11.11.0.10"
    # the peer's one-way delay stays 50 ms: 25 + 25
    assert int(home["environment"]["DELAY_MS"]) + int(carrier["environment"]["DELAY_MS"]) == 50
    assert services["dialer"]["depends_on"] == {"dialer_router": {"condition": "service_healthy"}}


def test_cgnat_splits_a_configured_delay_too() -> None:
    services = compose_for(spec(listener_nat="cgnat", listener_carrier="100.96.5.0/24",
                                delay_ms=30))["services"]
    assert services["listener_router"]["environment"]["DELAY_MS"] == "15"
    assert services["listener_carrier"]["environment"]["DELAY_MS"] == "15"


def test_bad_nat_specs_are_refused() -> None:
    with pytest.raises(ConfigError, match="dialer_nat"):
        spec(dialer_nat="cone")
    with pytest.raises(ConfigError, match="listener_carrier"):
        spec(listener_nat="cgnat")
