"""What a NAT probe starts, as plain data: networks, addresses, each container's command and env.

A pure function of the preset and three free /24 subnets, so the layout is unit-tested without
Docker. The client sits on its LAN behind the preset's routers (cgnat: home router, carrier
network in 100.64.0.0/10, carrier router); the probe server holds two addresses on the probe's
own internal "internet".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from cluster.nat import Preset

PROBE_PORTS = (3478, 3479)           # STUN's port and the next one
INET_POOL = "11.250.0.0/16"          # the probe's internet: routable-looking, internal, never routed
LAN_POOL = "10.250.0.0/16"
CARRIER_POOL = "100.127.0.0/16"      # inside RFC 6598's 100.64.0.0/10
PROBE_DIR = "/usr/local/lib/holepunch-probe"
CLIENT_INIT = "/usr/local/bin/holepunch-client-init"


def _host(subnet: str, offset: int) -> str:
    return str(ipaddress.IPv4Network(subnet).network_address + offset)


@dataclass(frozen=True)
class NetworkPlan:
    key: str            # "lan", "carrier", "inet"
    subnet: str
    internal: bool      # the internet is internal; LANs are plain bridges (DESIGN.md)


@dataclass(frozen=True)
class ContainerPlan:
    key: str                                  # "server", "router1", ..., "client"
    networks: tuple[tuple[str, str], ...]     # (network key, ipv4 address), the first one at create
    command: tuple[str, ...]                  # entrypoint and arguments
    environment: dict[str, str] = field(default_factory=dict)
    router: bool = False


@dataclass(frozen=True)
class Topology:
    networks: tuple[NetworkPlan, ...]
    server: ContainerPlan
    routers: tuple[ContainerPlan, ...]        # the internet side first: start order
    client: ContainerPlan
    primary: str
    alternate: str


def plan(preset: Preset, inet: str, lan: str, carrier: str | None) -> Topology:
    """The layout for `preset`; `carrier` is needed only by presets with two routers."""
    hops = len(preset.routers)
    if hops not in (1, 2):
        raise ValueError(f"{preset.name}: the probe lays out one or two routers, not {hops}")
    # nets[0] is the client's LAN, nets[-1] the internet; router i joins nets[i] and nets[i + 1]
    nets = [NetworkPlan("lan", lan, False)]
    if hops == 2:
        if carrier is None:
            raise ValueError(f"{preset.name}: two routers need a carrier subnet")
        nets.append(NetworkPlan("carrier", carrier, False))
    nets.append(NetworkPlan("inet", inet, True))
    primary, alternate = _host(inet, 100), _host(inet, 101)
    ports = [str(p) for p in PROBE_PORTS]
    server = ContainerPlan("server", (("inet", primary),),
                           ("python3", f"{PROBE_DIR}/nat_probe_server.py", primary, alternate, *ports))
    routers = []
    for i, spec in enumerate(preset.routers):
        inside, outside = nets[i], nets[i + 1]
        # the inside address is the next hop of whatever sits inside: .2 as in worker.compose
        outside_addr = _host(outside.subnet, 10) if outside.key == "inet" else _host(outside.subnet, 3)
        env = {"PUBLIC_SUBNET": outside.subnet, "LAN_SUBNET": inside.subnet,
               "DELAY_MS": str(spec.delay_ms), **spec.behaviour.router_env()}
        if outside.key != "inet":
            env["DEFAULT_VIA"] = _host(outside.subnet, 2)
        routers.append(ContainerPlan(f"router{i + 1}", ((outside.key, outside_addr),
                                                        (inside.key, _host(inside.subnet, 2))),
                                     ("/usr/local/bin/router.sh",), env, router=True))
    client = ContainerPlan("client", (("lan", _host(lan, 10)),),
                           (CLIENT_INIT, "python3", f"{PROBE_DIR}/nat_probe_client.py",
                            primary, alternate, *ports),
                           {"ROUTER_ADDR": _host(lan, 2)})
    return Topology(tuple(nets), server, tuple(reversed(routers)), client, primary, alternate)


def free_subnet(pool: str, taken: list[str]) -> str:
    """The first /24 of `pool` that overlaps no subnet the engine already has."""
    used = [ipaddress.IPv4Network(t) for t in taken]
    for candidate in ipaddress.IPv4Network(pool).subnets(new_prefix=24):
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise LookupError(f"every /24 of {pool} is in use on this engine")
