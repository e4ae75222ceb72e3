"""The upstream contract in a test's compose document (worker.contracts), and how
worker.project reads it: pure, no engine."""

from __future__ import annotations

import pytest
import yaml

from cluster.errors import ConfigError
from cluster.network import PUBLIC_NETWORK
from tests.worker.test_compose import GOLDEN, UPDATE, spec
from worker.compose import compose_for, render
from worker.contracts import command_for
from worker.project import plan_project

UPSTREAM_DIALER = dict(test_name="rust-upstream-v0.53 x go-v0.51 (tcp)", dialer_contract="upstream",
                       dialer_command=("hole-punch-client",))


def test_ours_is_unchanged_by_the_contracts():
    doc = compose_for(spec())
    assert list(doc["services"]) == ["dialer", "listener", "dialer_router", "listener_router"]
    assert "network_mode" not in doc["services"]["dialer"]


def test_upstream_dialer_matches_golden_file():
    text = render(compose_for(spec(**UPSTREAM_DIALER)))
    golden = GOLDEN / "upstream-x-ours-tcp.yaml"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden} differs; HOLEPUNCH_UPDATE_GOLDEN=1 regenerates it"


def test_upstream_client_gets_only_what_upstream_compose_gave_it():
    s = spec(**UPSTREAM_DIALER)
    services = compose_for(s)["services"]
    dialer = services["dialer"]
    assert dialer["environment"] == {"MODE": "dial", "TRANSPORT": "tcp"}
    assert dialer["network_mode"] == "service:dialer_netns"
    assert "cap_add" not in dialer and "networks" not in dialer
    assert dialer["command"] == ["hole-punch-client"]
    assert dialer["depends_on"] == {c: {"condition": "service_healthy"}
                                    for c in ("dialer_router", "dialer_netns", "redis")}
    # the namespace holder routes via the router and holds the capability
    holder = services["dialer_netns"]
    assert holder["image"] == s.router_image and holder["cap_add"] == ["NET_ADMIN"]
    assert holder["environment"]["ROUTER_ADDR"] == s.dialer_router_addr == "10.201.0.2"
    assert holder["networks"] == {"lan_dialer": {"ipv4_address": "10.201.0.3"}}
    # the proxy is `redis` on the upstream side's LAN, and reaches the global Redis
    proxy = services["redis"]
    assert proxy["environment"]["KEY_PREFIX"] == "hp-test-1:"
    assert proxy["environment"]["UPSTREAM"] == s.redis_addr
    assert proxy["networks"] == {"lan_dialer": {"ipv4_address": "10.201.0.4"}, PUBLIC_NETWORK: {}}
    # our listener is as it always was: the proxy shares its key space, in the global Redis
    ours = compose_for(spec(test_name=s.test_name))["services"]["listener"]
    assert services["listener"] == ours
    assert "listener_netns" not in services


def test_both_sides_upstream_share_one_proxy_on_both_lans():
    s = spec(dialer_contract="upstream", listener_contract="upstream")
    services = compose_for(s)["services"]
    assert set(services) == {"dialer", "listener", "dialer_router", "listener_router",
                             "dialer_netns", "listener_netns", "redis"}
    assert set(services["redis"]["networks"]) == {"lan_dialer", "lan_listener", PUBLIC_NETWORK}
    assert services["listener"]["environment"] == {"MODE": "listen", "TRANSPORT": "tcp"}
    assert "command" not in services["listener"]  # the image names its own


def test_the_document_runs_in_two_waves_helpers_first():
    plan = plan_project("p", compose_for(spec(**UPSTREAM_DIALER)))
    waves = [sorted(s.name for s in wave) for wave in plan.waves()]
    assert waves == [["dialer_netns", "dialer_router", "listener_router", "redis"],
                     ["dialer", "listener"]]
    dialer = plan.service("dialer")
    assert dialer.joins == "dialer_netns" and dialer.networks == ()
    assert dialer.command == ("hole-punch-client",) and dialer.entrypoint is None
    assert plan.service("redis").entrypoint == ("/usr/local/bin/holepunch-keyspace-proxy",)


def test_rendered_text_round_trips():
    doc = compose_for(spec(**UPSTREAM_DIALER))
    assert yaml.safe_load(render(doc)) == doc


def test_an_unknown_contract_is_refused():
    with pytest.raises(ConfigError, match="dialer_contract.*expected one of holepunch, upstream"):
        spec(dialer_contract="test-plans")


@pytest.mark.parametrize("config, command", [
    ({"Entrypoint": None, "Cmd": None}, ("hole-punch-client",)),   # upstream's images
    ({"Entrypoint": [], "Cmd": []}, ("hole-punch-client",)),
    ({"Entrypoint": None, "Cmd": ["/bin/sh"]}, ("hole-punch-client",)),  # alpine's shell
    ({"Entrypoint": ["/entry"], "Cmd": None}, None),               # the image's own runs
])
def test_command_unless_the_image_has_an_entrypoint(config, command):
    assert command_for(config, "upstream") == command
    assert command_for({}, "holepunch") is None


@pytest.mark.parametrize("service, problem", [
    ({"image": "x", "network_mode": "host"}, "expected service:<name>"),
    ({"image": "x", "network_mode": "service:a", "networks": ["lan"]}, "no networks of its own"),
    ({"image": "x", "command": "sh -c 'x'"}, "a list of strings"),
    ({"image": "x", "network_mode": "service:nobody"}, "unknown service"),
])
def test_project_refuses_what_it_cannot_run(service, problem):
    document = {"services": {"a": {"image": "x"}, "b": service}, "networks": {"lan": {}}}
    with pytest.raises(ConfigError, match=problem):
        plan_project("p", document)


def test_holders_for_ours_route_our_clients_without_a_capability():
    s = spec(holders_for_ours=True)
    services = compose_for(s)["services"]
    assert "redis" not in services  # no upstream side: no proxy
    for side, router in (("dialer", "dialer_router"), ("listener", "listener_router")):
        client = services[side]
        assert client["network_mode"] == f"service:{side}_netns"
        assert "cap_add" not in client and "networks" not in client
        assert "ROUTER_ADDR" not in client["environment"] and client["environment"]["TEST_KEY"]
        assert set(client["depends_on"]) == {router, f"{side}_netns"}
        assert services[f"{side}_netns"]["environment"]["ROUTER_ADDR"] == getattr(s, f"{side}_router_addr")
    assert compose_for(spec())["services"]["dialer"]["cap_add"] == ["NET_ADMIN"]  # default unchanged
