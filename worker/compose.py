"""The docker-compose file for one test: a pure function of a `TestSpec`.

Shape (DESIGN.md, "The test"): `dialer` and `listener` each sit alone on their own LAN behind a NAT
router (`dialer_router`, `listener_router`); the routers also join the external `hole-punch-network`,
the simulated internet where the global Redis and relay live. The rendered text is stable for equal
specs, so its sha256 names it in the cache (`docker-compose/<sha256>.yaml`) and equal tests share a file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from cluster.errors import ConfigError
from cluster.evidence import CAPTURE_LIMIT
from cluster.labels import PASS as LABEL_PASS
from cluster.labels import TEST as LABEL_TEST
from cluster.models import Muxer, SecureChannel
from cluster.nat import DEFAULT_PRESET, PEER_DELAY_MS, PRESETS, Preset
from cluster.network import DEFAULT_DELAY_MS, PUBLIC_NETWORK, TRANSPORTS
from worker.captures import CLIENT_KEYLOG_FILE, ROUTER_CAPTURE_FILE
from worker.contracts import CONTRACTS, apply_contracts

# Where the router sits on its LAN (the bridge's gateway, the host side, takes .1).
ROUTER_HOST_OFFSET = 2
# A cgnat side's home router on the carrier network (the carrier router has .2 there).
HOME_ROUTER_CARRIER_OFFSET = 3
# The router touches this file when its NAT and delay rules are in place; clients wait for it.
ROUTER_READY_FILE = "/tmp/setup-done"
# Compose 1.29 normalises project names to these characters; we produce them already.
_PROJECT_UNSAFE = re.compile(r"[^a-z0-9]+")
_PROJECT_SLUG_MAX = 40


SECURE_CHANNELS = tuple(s.value for s in SecureChannel)
MUXERS = tuple(m.value for m in Muxer)


def project_name(test_name: str, pass_id: str) -> str:
    """A compose project name from the test name and pass id: safe characters, unique per test.

    The slug alone is lossy (`v0.5 x go` and `v0-5 x go` meet), so a short hash of the exact
    pair keeps two different tests apart.
    """
    digest = hashlib.sha256(f"{pass_id}\0{test_name}".encode()).hexdigest()[:10]
    slug = _PROJECT_UNSAFE.sub("-", test_name.lower()).strip("-")[:_PROJECT_SLUG_MAX].strip("-")
    pass_slug = _PROJECT_UNSAFE.sub("-", pass_id.lower()).strip("-")[:20].strip("-")
    return "-".join(part for part in ("hp", pass_slug, slug, digest) if part)


@dataclass(frozen=True)
class TestSpec:
    """Everything the compose file of one test depends on, and nothing else."""

    __test__ = False  # not a pytest test class, despite the name

    test_name: str
    pass_id: str
    dialer_image: str
    listener_image: str
    router_image: str
    transport: str
    redis_addr: str  # IP:port on the public network (LAN clients cannot resolve public names)
    test_key: str
    public_subnet: str
    dialer_lan: str
    listener_lan: str
    delay_ms: int = DEFAULT_DELAY_MS
    # When set, routers forward public traffic only to these addresses (the negative test).
    public_allow: tuple[str, ...] | None = None
    extra_labels: tuple[tuple[str, str], ...] = ()
    # A tcp test's secure channel and muxer (the test name's `(tcp, noise, yamux)`); None: the
    # client's default (a quic test, or a tcp test named by transport alone).
    secure_channel: str | None = None
    muxer: str | None = None
    # Routers capture their public side and clients write key logs (worker.captures).
    evidence: bool = False
    # Each side's NAT preset (cluster/nat.py); a two-router preset (cgnat) needs that side's
    # carrier network, a /24 of 100.64.0.0/10 between its home and carrier routers.
    dialer_nat: str = DEFAULT_PRESET
    listener_nat: str = DEFAULT_PRESET
    dialer_carrier: str | None = None
    listener_carrier: str | None = None
    # The contract each side's image follows (cluster.models.Contract), and the command an
    # upstream-contract image is given when it names none (worker.contracts).
    dialer_contract: str = "holepunch"
    listener_contract: str = "holepunch"
    dialer_command: tuple[str, ...] | None = None
    listener_command: tuple[str, ...] | None = None
    # Route our clients too by a namespace holder (no NET_ADMIN for them, no init script needed;
    # worker.contracts): a holder, made with its lease's routers before the test
    # (worker.warmrouters), spares the client's start its network set-up. False: our clients
    # join their LAN themselves and their init script routes them (ROUTER_ADDR).
    holders_for_ours: bool = True
    # The host's pool networks for the two LANs (worker.lanpool), named as external networks;
    # None: the project makes its own LAN networks (and removes them with it).
    dialer_lan_network: str | None = None
    listener_lan_network: str | None = None
    project: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "project", project_name(self.test_name, self.pass_id))
        if self.transport not in TRANSPORTS:
            self._bad("transport", f"expected one of {', '.join(TRANSPORTS)}, got {self.transport!r}")
        for key in ("dialer_image", "listener_image", "router_image", "test_key"):
            if not getattr(self, key):
                self._bad(key, "must not be empty")
        host, _, port = self.redis_addr.rpartition(":")
        try:
            ipaddress.IPv4Address(host)
            if not 0 < int(port) < 65536:
                raise ValueError(port)
        except ValueError:
            self._bad("redis_addr", f"expected IPv4:port, got {self.redis_addr!r}")
        nets = {}
        for key in ("public_subnet", "dialer_lan", "listener_lan"):
            try:
                nets[key] = ipaddress.IPv4Network(getattr(self, key))
            except ValueError as err:
                self._bad(key, f"expected an IPv4 subnet: {err}")
            if nets[key].num_addresses < 8:
                self._bad(key, "subnet too small (need a router, a client and a gateway)")
        for a, b in (("dialer_lan", "listener_lan"), ("dialer_lan", "public_subnet"),
                     ("listener_lan", "public_subnet")):
            if nets[a].overlaps(nets[b]):
                self._bad(b, f"{nets[b]} overlaps {a} {nets[a]}")
        for key, allowed in (("secure_channel", SECURE_CHANNELS), ("muxer", MUXERS)):
            value = getattr(self, key)
            if value is not None and (self.transport != "tcp" or value not in allowed):
                self._bad(key, f"expected one of {', '.join(allowed)} on a tcp test, got {value!r}"
                               f" on {self.transport}")
        for side in ("dialer", "listener"):
            nat, carrier = getattr(self, f"{side}_nat"), getattr(self, f"{side}_carrier")
            if nat not in PRESETS:
                self._bad(f"{side}_nat", f"expected one of {', '.join(PRESETS)}, got {nat!r}")
            if len(PRESETS[nat].routers) > 1:
                if carrier is None:
                    self._bad(f"{side}_carrier", f"the {nat} preset needs a carrier subnet")
                try:
                    net = ipaddress.IPv4Network(carrier)
                except ValueError as err:
                    self._bad(f"{side}_carrier", f"expected an IPv4 subnet: {err}")
                if net.num_addresses < 8:
                    self._bad(f"{side}_carrier", "subnet too small (need two routers and a gateway)")
        for key in ("dialer_contract", "listener_contract"):
            if getattr(self, key) not in CONTRACTS:
                self._bad(key, f"expected one of {', '.join(CONTRACTS)}, got {getattr(self, key)!r}")
        if not 0 <= self.delay_ms <= 10_000:
            self._bad("delay_ms", f"expected 0..10000, got {self.delay_ms}")
        if self.public_allow is not None:
            for addr in self.public_allow:
                try:
                    ipaddress.IPv4Address(addr)
                except ValueError:
                    self._bad("public_allow",
                              f"expected IPv4 addresses (the router takes no subnets), got {addr!r}")

    def _bad(self, key: str, problem: str) -> None:
        raise ConfigError("TestSpec", key, problem)

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_PASS: self.pass_id, LABEL_TEST: self.test_name, **dict(self.extra_labels)}

    @property
    def dialer_router_addr(self) -> str:
        return router_address(self.dialer_lan)

    @property
    def listener_router_addr(self) -> str:
        return router_address(self.listener_lan)


def router_address(lan_subnet: str) -> str:
    return str(ipaddress.IPv4Network(lan_subnet).network_address + ROUTER_HOST_OFFSET)


def compose_for(spec: TestSpec) -> dict[str, Any]:
    """The compose document of one test, as plain data in the order it is rendered."""
    labels = spec.labels
    dialer_routers, dialer_nets = _nat_side(spec, "dialer", spec.dialer_nat, spec.dialer_lan,
                                            spec.dialer_carrier, labels)
    listener_routers, listener_nets = _nat_side(spec, "listener", spec.listener_nat,
                                                spec.listener_lan, spec.listener_carrier, labels)
    return apply_contracts(spec, {
        "services": {
            "dialer": _client(spec, "dial", spec.dialer_image, "lan_dialer", "dialer_router",
                              spec.dialer_router_addr, labels),
            "listener": _client(spec, "listen", spec.listener_image, "lan_listener", "listener_router",
                                spec.listener_router_addr, labels),
            **dialer_routers,
            **listener_routers,
        },
        "networks": {
            "lan_dialer": _lan(spec.dialer_lan, labels, spec.dialer_lan_network),
            "lan_listener": _lan(spec.listener_lan, labels, spec.listener_lan_network),
            **dialer_nets,
            **listener_nets,
            PUBLIC_NETWORK: {"external": True, "name": PUBLIC_NETWORK},
        },
    })


def _nat_side(spec: TestSpec, side: str, nat: str, lan_subnet: str, carrier: str | None,
              labels: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One peer's NAT: its router services and the networks between them.

    One router (every preset but cgnat): `<side>_router` between the LAN and the internet, with
    the preset's knobs (none for the default: today's compose file). cgnat: the home router
    `<side>_router` (port-restricted) between the LAN and the carrier network `carrier_<side>`,
    its default route via the carrier router `<side>_carrier` (the carrier NAT, random ports),
    which faces the internet; each delays half the peer's share, so the direct RTT stays
    2 x 2 x delay_ms (200 ms)."""
    preset = PRESETS[nat]
    lan = f"lan_{side}"
    if len(preset.routers) == 1:
        router = _router(spec, lan, lan_subnet, labels, _preset_env(spec, preset, 0))
        return {f"{side}_router": router}, {}
    assert carrier is not None  # TestSpec checked it
    carrier_net, carrier_router = f"carrier_{side}", f"{side}_carrier"
    outer = _router(spec, carrier_net, carrier, labels, _preset_env(spec, preset, 1))
    home_env = {**_preset_env(spec, preset, 0), "PUBLIC_SUBNET": carrier,
                "DEFAULT_VIA": router_address(carrier)}
    home = _router(spec, lan, lan_subnet, labels, home_env, public=(
        carrier_net, _host(carrier, HOME_ROUTER_CARRIER_OFFSET)))
    home["environment"].pop("PUBLIC_ALLOW", None)  # the carrier router faces the internet
    home["depends_on"] = {carrier_router: {"condition": "service_healthy"}}
    return {f"{side}_router": home, carrier_router: outer}, {carrier_net: _lan(carrier, labels)}


def _preset_env(spec: TestSpec, preset: Preset, index: int) -> dict[str, str]:
    """The knobs of the preset's index-th router (0: next to the client), its share of the
    peer's delay scaled to the spec's delay_ms."""
    router = preset.routers[index]
    env = dict(router.behaviour.router_env())
    if router.delay_ms != PEER_DELAY_MS:
        env["DELAY_MS"] = str(spec.delay_ms * router.delay_ms // PEER_DELAY_MS)
    return env


def _host(subnet: str, offset: int) -> str:
    return str(ipaddress.IPv4Network(subnet).network_address + offset)


def _client(spec: TestSpec, mode: str, image: str, lan: str, router: str, router_addr: str,
            labels: dict[str, str]) -> dict[str, Any]:
    environment = {
        "MODE": mode,
        "TRANSPORT": spec.transport,
        "REDIS_ADDR": spec.redis_addr,
        "TEST_KEY": spec.test_key,
        "ROUTER_ADDR": router_addr,
    }
    if spec.secure_channel is not None:
        environment["SECURE_CHANNEL"] = spec.secure_channel
    if spec.muxer is not None:
        environment["MUXER"] = spec.muxer
    environment.update(keylog_environment(spec))
    return {
        "image": image,
        "init": True,
        # The client's entrypoint swaps Docker's default route for the router.
        "cap_add": ["NET_ADMIN"],
        "environment": environment,
        "networks": [lan],
        # A packet sent before the router's NAT exists leaves a stuck conntrack entry.
        "depends_on": {router: {"condition": "service_healthy"}},
        "stop_grace_period": "2s",
        "labels": dict(labels),
    }


def _router(spec: TestSpec, lan: str, lan_subnet: str, labels: dict[str, str],
            nat_env: dict[str, str] | None = None,
            public: tuple[str, str] | None = None) -> dict[str, Any]:
    """A NAT router between `lan` and the internet (or, `public` given, that network and its
    fixed address); `nat_env` adds the preset's knobs or overrides the defaults."""
    environment = {
        "PUBLIC_SUBNET": spec.public_subnet,
        "LAN_SUBNET": lan_subnet,
        "DELAY_MS": str(spec.delay_ms),
    }
    if spec.public_allow is not None:
        environment["PUBLIC_ALLOW"] = ",".join(spec.public_allow)
    environment.update(capture_environment(spec))
    environment.update(nat_env or {})
    outside = {public[0]: {"ipv4_address": public[1]}} if public else {PUBLIC_NETWORK: {}}
    return {
        "image": spec.router_image,
        "init": True,
        # SYS_NICE lets the delay stage run at a higher priority: steadier RTTs on a busy host.
        "cap_add": ["NET_ADMIN", "SYS_NICE"],
        "sysctls": {"net.ipv4.ip_forward": "1"},
        "environment": environment,
        "networks": {
            **outside,
            lan: {"ipv4_address": router_address(lan_subnet)},
        },
        "healthcheck": {
            "test": ["CMD", "test", "-f", ROUTER_READY_FILE],
            "interval": "250ms",
            "timeout": "2s",
            "retries": 120,
        },
        "stop_grace_period": "2s",
        "labels": dict(labels),
    }


def capture_environment(spec: TestSpec) -> dict[str, str]:
    """A router's capture of its public side, bounded (router.sh; read by worker.captures)."""
    if not spec.evidence:
        return {}
    return {"CAPTURE_BYTES": str(CAPTURE_LIMIT), "CAPTURE_FILE": ROUTER_CAPTURE_FILE}


def keylog_environment(spec: TestSpec) -> dict[str, str]:
    """Where a client whose library supports it writes its TLS/QUIC keys."""
    return {"SSLKEYLOGFILE": CLIENT_KEYLOG_FILE} if spec.evidence else {}


def _lan(subnet: str, labels: dict[str, str], pooled: str | None = None) -> dict[str, Any]:
    # Not `internal`: Docker's isolation rules would drop client-to-router frames to off-subnet
    # addresses. No masquerade: the router is the only way out (the host guard drops the rest).
    # A pool network (worker.lanpool) has that shape already: the project only joins it.
    if pooled is not None:
        return {"external": True, "name": pooled}
    return {
        "driver": "bridge",
        "driver_opts": {"com.docker.network.bridge.enable_ip_masquerade": "false"},
        "ipam": {"config": [{"subnet": subnet}]},
        "labels": dict(labels),
    }


def render(document: dict[str, Any]) -> str:
    """YAML text in the document's own key order: equal documents give equal text."""
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)

