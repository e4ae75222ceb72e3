"""The upstream client contract in a test's compose document (impl/README.md, "Two contracts").

An image made for libp2p/test-plans runs here unmodified. It gets what upstream's compose gave
it, from two small helpers that run from our router image, so nothing of ours is in its image:

- `<side>_netns`, a network-namespace holder on the client's LAN: it owns the namespace, sets
  the default route through the side's NAT router (NET_ADMIN is its, not the client's) and says
  so with a ready file. The client joins that namespace (`network_mode: service:<side>_netns`)
  and starts only once the route is in place and its router is ready.
- `redis`, the test's key-space proxy (router/keyspace-proxy), on the LAN of every upstream side
  and on the simulated internet: the client's `redis:6379`. It maps the bare keys to the test's
  `<TEST_KEY>:` keys in the host's global Redis, so an upstream client and one of ours share the
  test's key space (the harness's relay addresses, pushed there twice, included) and neither
  sees another test's. A Redis per test would hide the keys as well, but our clients would then
  need bare keys too (a mixed pair shares one space). It does start slower (median 0.97 s to
  answer a PING against 0.33 s for a redis-server, bench/contract_helpers.py), but it starts
  with the routers, which take longer: an upstream test's `up` is no longer than ours.
- the command `hole-punch-client`, as upstream's compose gives it, unless the image has an
  ENTRYPOINT of its own (`command_for`).

Pure: the document in, the document out; the one engine call (`command_for`) is at the edge.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from cluster.models import Contract
from cluster.network import PUBLIC_NETWORK
from cluster.upstream import (
    CLIENT_COMMAND,
    KEYSPACE_PROXY,
    KEYSPACE_READY_FILE,
    NETNS_HOLDER,
    NETNS_READY_FILE,
    REDIS_HOST,
)

if TYPE_CHECKING:
    from worker.compose import TestSpec

CONTRACTS = tuple(c.value for c in Contract)
# Fixed addresses on an upstream side's LAN, beside the router's: the helpers start with
# the routers, and an address the engine handed out first could be the one a router asks for.
HOLDER_HOST_OFFSET = 3
PROXY_HOST_OFFSET = 4
# The helpers' own checks: a file each touches once it is ready (run by worker.project).
_HEALTH = {"interval": "100ms", "timeout": "2s", "retries": 200}
SIDES = (("dialer", "dial", "lan_dialer", "dialer_router"),
         ("listener", "listen", "lan_listener", "listener_router"))


def holder_name(side: str) -> str:
    return f"{side}_netns"


def upstream_sides(spec: TestSpec) -> list[str]:
    """The sides ('dialer', 'listener') whose image follows the upstream contract."""
    return [side for side, *_ in SIDES if getattr(spec, f"{side}_contract") == Contract.UPSTREAM.value]


def apply_contracts(spec: TestSpec, document: dict[str, Any]) -> dict[str, Any]:
    """`document` (worker.compose's, for our contract) with each upstream side's client made
    into an upstream one, its namespace holder beside it, and the test's `redis` proxy; with
    `spec.holders_for_ours`, our clients are routed by a holder too (`_held`)."""
    sides = upstream_sides(spec)
    if not sides and not spec.holders_for_ours:
        return document
    services = dict(document["services"])
    lans = []
    for side, mode, lan, router in SIDES:
        labels = services[side]["labels"]
        if side in sides:
            lans.append(lan)
            services[side] = _upstream_client(spec, side, mode, router, labels)
        elif spec.holders_for_ours:
            services[side] = _held(services[side], side)
        else:
            continue
        services[holder_name(side)] = _holder(spec, side, lan, labels)
    if sides:
        services[REDIS_HOST] = _keyspace_proxy(spec, lans, services[sides[0]]["labels"])
    return {**document, "services": services}


def _held(client: dict[str, Any], side: str) -> dict[str, Any]:
    """One of our clients in a holder's namespace: no capability, no ROUTER_ADDR (so its
    image's holepunch-client-init only execs the client), started once the route is set."""
    held = {key: value for key, value in client.items() if key not in ("cap_add", "networks")}
    held["environment"] = {k: v for k, v in client["environment"].items() if k != "ROUTER_ADDR"}
    held["network_mode"] = f"service:{holder_name(side)}"
    held["depends_on"] = {**client["depends_on"],
                          holder_name(side): {"condition": "service_healthy"}}
    return held


def _upstream_client(spec: TestSpec, side: str, mode: str, router: str,
                     labels: dict[str, str]) -> dict[str, Any]:
    service: dict[str, Any] = {
        "image": getattr(spec, f"{side}_image"),
        "init": True,
        "network_mode": f"service:{holder_name(side)}",
        # Upstream's contract: these two, nothing else.
        "environment": {"MODE": mode, "TRANSPORT": spec.transport},
        "depends_on": {router: {"condition": "service_healthy"},
                       holder_name(side): {"condition": "service_healthy"},
                       REDIS_HOST: {"condition": "service_healthy"}},
        "stop_grace_period": "2s",
        "labels": dict(labels),
    }
    command = getattr(spec, f"{side}_command")
    if command:
        service["command"] = list(command)
    return service


def _holder(spec: TestSpec, side: str, lan: str, labels: dict[str, str]) -> dict[str, Any]:
    lan_subnet = _subnet(spec, lan)
    return {
        "image": spec.router_image,
        "init": True,
        "entrypoint": [NETNS_HOLDER],
        "cap_add": ["NET_ADMIN"],
        "environment": {"ROUTER_ADDR": getattr(spec, f"{side}_router_addr"),
                        "READY_FILE": NETNS_READY_FILE},
        "networks": {lan: {"ipv4_address": host_address(lan_subnet, HOLDER_HOST_OFFSET)}},
        "healthcheck": {"test": ["CMD", "test", "-f", NETNS_READY_FILE], **_HEALTH},
        "stop_grace_period": "1s",
        "labels": dict(labels),
    }


def _keyspace_proxy(spec: TestSpec, lans: list[str], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "image": spec.router_image,
        "init": True,
        "entrypoint": [KEYSPACE_PROXY],
        # On the LANs and the internet at once: never a way round the routers.
        "sysctls": {"net.ipv4.ip_forward": "0"},
        "environment": {"KEY_PREFIX": f"{spec.test_key}:", "UPSTREAM": spec.redis_addr,
                        "READY_FILE": KEYSPACE_READY_FILE},
        "networks": {**{lan: {"ipv4_address": host_address(_subnet(spec, lan), PROXY_HOST_OFFSET)}
                         for lan in lans}, PUBLIC_NETWORK: {}},
        "healthcheck": {"test": ["CMD", "test", "-f", KEYSPACE_READY_FILE], **_HEALTH},
        "stop_grace_period": "1s",
        "labels": dict(labels),
    }


def _subnet(spec: TestSpec, lan: str) -> str:
    return spec.dialer_lan if lan == "lan_dialer" else spec.listener_lan


def host_address(lan_subnet: str, offset: int) -> str:
    return str(ipaddress.IPv4Network(lan_subnet).network_address + offset)


def command_for(image_config: dict[str, Any], contract: str) -> tuple[str, ...] | None:
    """The command an upstream-contract client runs: `hole-punch-client`, as upstream's compose
    gives every client (a CMD such images inherit, alpine's /bin/sh, is no client), unless the
    image has an ENTRYPOINT of its own, which then runs as it is. None for ours (our images
    name their own)."""
    if contract != Contract.UPSTREAM.value or image_config.get("Entrypoint"):
        return None
    return CLIENT_COMMAND
