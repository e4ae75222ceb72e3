"""Stray routes into the simulated internet: devices on this host that hold its subnet but are
not this engine's network.

A Docker engine stopped without removing its networks (a killed dockerd, a second engine with a
data root of its own that was then deleted) leaves its bridges, their addresses and their routes
in the kernel. One that holds an address in the public subnet is a second route to it, and the
host's own packets to Redis and the relay may take the dead one: "No route to host" for every
test, as infrastructure errors, until someone reads `ip route`. So before the network is used,
any such device is an InfrastructureError naming it and the way out.

The worker removes nothing it did not make: an idle bridge of another live engine in this network
namespace looks just like a dead one. `.ci/setup`, which provisions the machine and its one
engine, removes the orphans (a `br-<id>` bridge with no ports whose network the engine lacks).

Only the public subnet is checked: it is the one the host itself sends to. A LAN is reached only
by its containers and its router, over its own bridge.

`stray_routes` is the pure decision; `check_routes` reads the kernel and the engine.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import InfrastructureError

ENGINE_BRIDGE = re.compile(r"^br-[0-9a-f]{12}$")  # the name Docker gives a network's bridge
SYS_NET = Path("/sys/class/net")


@dataclass(frozen=True)
class StrayRoute:
    destination: str
    device: str
    orphan: bool  # a Docker-named bridge with no ports and no network on this engine

    def advice(self) -> str:
        whose = ("a bridge with no ports, likely left by a stopped Docker engine" if self.orphan
                 else "another engine's network, or made by hand")
        return (f"{self.destination} is routed through {self.device}, which is not a network of "
                f"this Docker engine ({whose}): the host's packets to the simulated internet may "
                f"go there. Remove it (`ip link delete {self.device}`; `bash .ci/setup` removes "
                f"such orphans) or give this worker another --public-subnet")


def stray_routes(routes: list[dict], subnet: str, engine_devices: set[str],
                 ports: dict[str, int]) -> list[StrayRoute]:
    """The routes in `routes` (as `ip -j route` prints them) to addresses of `subnet` through a
    device that is not one of `engine_devices`. `ports`: how many ports each bridge has."""
    wanted = ipaddress.IPv4Network(subnet)
    strays = []
    for route in routes:
        destination, device = route.get("dst", ""), route.get("dev", "")
        if not device or device in engine_devices:
            continue
        try:
            network = ipaddress.IPv4Network(destination, strict=False)
        except ValueError:  # "default", an IPv6 route: not into the subnet
            continue
        if network.prefixlen == 0 or not network.overlaps(wanted):
            continue
        orphan = bool(ENGINE_BRIDGE.match(device)) and ports.get(device, 0) == 0
        strays.append(StrayRoute(str(network), device, orphan))
    return strays


def engine_devices(client) -> set[str]:
    """The bridge of every network on this engine."""
    devices = set()
    for network in client.networks.list():
        options = network.attrs.get("Options") or {}
        name = options.get("com.docker.network.bridge.name")
        devices.add(name or ("docker0" if network.name == "bridge" else f"br-{network.id[:12]}"))
    return devices


def _host_routes() -> list[dict]:
    try:
        result = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "main"],
                                capture_output=True, text=True, check=False, timeout=10)
        return json.loads(result.stdout) if result.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired):  # no iproute2: nothing to check
        return []


def _ports(device: str) -> int:
    try:
        return sum(1 for _ in (SYS_NET / device / "brif").iterdir())
    except OSError:
        return 0


def check_routes(client, subnet: str) -> None:
    """Raise for the first device outside this engine that holds `subnet`."""
    routes = _host_routes()
    held = {r.device for r in stray_routes(routes, subnet, set(), {})}
    if not held:  # no route into the subnet at all: the engine's network is yet to be made
        return
    strays = stray_routes(routes, subnet, engine_devices(client),
                          {device: _ports(device) for device in held})
    if strays:
        raise InfrastructureError(strays[0].advice())
