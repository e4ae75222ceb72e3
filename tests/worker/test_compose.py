"""compose_for: the shape DESIGN.md asks for, checked against golden files and by property."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cluster.errors import ConfigError
from worker.compose import (
    PUBLIC_NETWORK,
    TestSpec,
    compose_for,
    project_name,
    render,
)

GOLDEN = Path(__file__).parent / "golden"
# Set to regenerate the golden files after a deliberate change; review the diff before committing.
UPDATE = os.environ.get("HOLEPUNCH_UPDATE_GOLDEN") == "1"


def spec(**changes) -> TestSpec:
    base = dict(
        test_name="rust-v0.56 x go-v0.45 (tcp)",
        pass_id="full-091500-25-11-2026",
        dialer_image="a" * 64,
        listener_image="b" * 64,
        router_image="c" * 64,
        transport="tcp",
        redis_addr="11.11.0.10:6379",
        test_key="hp-test-1",
        public_subnet="11.11.0.0/16",
        dialer_lan="10.201.0.0/24",
        listener_lan="10.201.1.0/24",
        # Our clients on their LAN themselves: the shape most tests here look at. The worker's
        # default routes them by namespace holders (the `-holders` golden file).
        holders_for_ours=False,
    )
    base.update(changes)
    return TestSpec(**base)


CASES = {
    "rust-x-go-tcp": spec(),
    "rust-x-go-tcp-holders": spec(holders_for_ours=True),
    "go-x-rust-quic-delay25": spec(
        test_name="go-v0.45 x rust-v0.56 (quic)", transport="quic", delay_ms=25,
        dialer_lan="10.201.8.0/24", listener_lan="10.201.9.0/24",
    ),
    "rust-x-go-tcp-tls-yamux": spec(
        test_name="rust-v0.56 x go-v0.45 (tcp, tls, yamux)", secure_channel="tls", muxer="yamux",
    ),
    "negative-public-allow": spec(
        test_name="rust-v0.56 x rust-v0.56 (tcp) blocked", public_allow=("11.11.0.10", "11.11.0.11"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_golden_file(name):
    text = render(compose_for(CASES[name]))
    golden = GOLDEN / f"{name}.yaml"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden} differs; HOLEPUNCH_UPDATE_GOLDEN=1 regenerates it"


def test_equal_specs_give_equal_text():
    a, b = spec(), spec()
    assert a is not b
    text_a, text_b = render(compose_for(a)), render(compose_for(b))
    assert text_a == text_b


def test_different_specs_give_different_texts():
    texts = {render(compose_for(s)) for s in CASES.values()}
    assert len(texts) == len(CASES)


def test_shape():
    s = spec(public_allow=("11.11.0.10",))
    doc = compose_for(s)
    services, networks = doc["services"], doc["networks"]
    assert list(services) == ["dialer", "listener", "dialer_router", "listener_router"]
    assert networks[PUBLIC_NETWORK] == {"external": True, "name": PUBLIC_NETWORK}
    for lan, subnet in (("lan_dialer", s.dialer_lan), ("lan_listener", s.listener_lan)):
        net = networks[lan]
        assert "internal" not in net
        assert net["driver_opts"] == {"com.docker.network.bridge.enable_ip_masquerade": "false"}
        assert net["ipam"]["config"] == [{"subnet": subnet}]
    for name, svc in services.items():
        assert svc["init"] is True
        assert svc["cap_add"] == (["NET_ADMIN", "SYS_NICE"] if name.endswith("_router") else ["NET_ADMIN"])
        assert svc["labels"] == {"holepunch.pass": s.pass_id, "holepunch.test": s.test_name}
    for net in ("lan_dialer", "lan_listener"):
        assert networks[net]["labels"] == services["dialer"]["labels"]

    for client, router, lan, mode, addr in (
        ("dialer", "dialer_router", "lan_dialer", "dial", "10.201.0.2"),
        ("listener", "listener_router", "lan_listener", "listen", "10.201.1.2"),
    ):
        c, r = services[client], services[router]
        assert c["networks"] == [lan]
        assert c["depends_on"] == {router: {"condition": "service_healthy"}}
        assert c["environment"] == {
            "MODE": mode, "TRANSPORT": "tcp", "REDIS_ADDR": "11.11.0.10:6379",
            "TEST_KEY": "hp-test-1", "ROUTER_ADDR": addr,
        }
        assert r["networks"] == {PUBLIC_NETWORK: {}, lan: {"ipv4_address": addr}}
        assert r["sysctls"] == {"net.ipv4.ip_forward": "1"}
        assert r["environment"]["PUBLIC_SUBNET"] == "11.11.0.0/16"
        assert r["environment"]["DELAY_MS"] == "50"
        assert r["environment"]["PUBLIC_ALLOW"] == "11.11.0.10"
        assert "/tmp/setup-done" in r["healthcheck"]["test"]
    assert services["dialer_router"]["environment"]["LAN_SUBNET"] == "10.201.0.0/24"
    assert "PUBLIC_ALLOW" not in compose_for(spec())["services"]["dialer_router"]["environment"]


def test_rendered_text_round_trips():
    doc = compose_for(spec())
    assert yaml.safe_load(render(doc)) == doc


def test_spec_is_frozen_and_hashable():
    s = spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.transport = "quic"  # type: ignore[misc]
    assert hash(s) == hash(spec())


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=30))
def test_project_names_are_safe(test_name, pass_id):
    name = project_name(test_name, pass_id)
    assert name.startswith("hp-")
    assert all(c.isascii() and (c.isalnum() or c == "-") and not c.isupper() for c in name)
    assert len(name) <= 3 + 21 + 41 + 10
    assert name == project_name(test_name, pass_id)


def test_project_names_keep_lossy_slugs_apart():
    assert project_name("rust-v0.5 x go (tcp)", "p") != project_name("rust-v0-5 x go (tcp)", "p")
    assert project_name("t", "pass-1") != project_name("t", "pass-2")


@pytest.mark.parametrize("change, key", [
    (dict(transport="webrtc"), "transport"),
    (dict(redis_addr="hole-punch-redis:6379"), "redis_addr"),
    (dict(redis_addr="11.11.0.10"), "redis_addr"),
    (dict(public_subnet="11.11.0.0/33"), "public_subnet"),
    (dict(listener_lan="10.201.0.0/24"), "listener_lan"),
    (dict(dialer_lan="11.11.5.0/24"), "public_subnet"),
    (dict(dialer_lan="10.201.0.0/30"), "dialer_lan"),
    (dict(delay_ms=-1), "delay_ms"),
    (dict(router_image=""), "router_image"),
    (dict(public_allow=("relay",)), "public_allow"),
    (dict(public_allow=("11.11.0.0/24",)), "public_allow"),
    (dict(secure_channel="plaintext"), "secure_channel"),
    (dict(muxer="spdy"), "muxer"),
    (dict(transport="quic", secure_channel="noise"), "secure_channel"),
])
def test_bad_specs_name_the_key(change, key):
    with pytest.raises(ConfigError) as err:
        spec(**change)
    assert err.value.key == key


def test_a_tcp_tests_secure_channel_and_muxer_reach_both_clients_and_only_when_set():
    tls = compose_for(spec(secure_channel="tls", muxer="mplex"))["services"]
    for side in ("dialer", "listener"):
        assert tls[side]["environment"]["SECURE_CHANNEL"] == "tls"
        assert tls[side]["environment"]["MUXER"] == "mplex"
    plain = compose_for(spec())["services"]["dialer"]["environment"]
    assert "SECURE_CHANNEL" not in plain and "MUXER" not in plain


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
@pytest.mark.parametrize("name", sorted(CASES))
def test_docker_compose_accepts_it(name, tmp_path):
    """docker-compose 1.29 must take the file as is: no `version:` key, `depends_on` conditions."""
    path = tmp_path / "docker-compose.yaml"
    path.write_text(render(compose_for(CASES[name])))
    run = subprocess.run(["docker-compose", "-p", "check", "-f", str(path), "config", "-q"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
