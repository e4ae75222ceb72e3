"""The host's LAN networks: made once per leased pair of subnets and kept across tests.

A test's dialer and listener each sit on a LAN of their own (worker.compose). Two bridge networks
made for every test and removed after it (an engine call each, with its iptables rules, under
the engine's lock) were about half a second of a test's set-up with four tests at once, and as
much again of its teardown. So the two networks of a lease (worker.subnets) are made the first
time this host hands the lease out, labelled as the host's (role `lan`, their subnet, the worker
process that made them), and kept: the test's compose document names them as external networks,
and only its containers come and go.

What keeps one test's LAN apart from the next one's is the lease: a pair is one test's at a
time, and a test's lease is released only once its containers are gone (worker.teardown), so
nothing of the previous test is attached when the next one takes the pair. `ready` checks that
(one inspect per network) and removes what a failed teardown left attached before the test
starts. The networks have the shape compose gave them (a plain bridge, no masquerade: the router
is the only way out and the host guard drops the rest), so the isolation between LANs and the
host guard hold as before.

They go with the host: at its shutdown and `holepunch-worker --cleanup` (GlobalServices.stop), at
its next start (what a crashed run left), and at any host's start or the watchdog's clean-up
once the process that made them is dead (worker.reaper).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.types import IPAMConfig, IPAMPool

from cluster.errors import HolepunchError, InfrastructureError
from cluster.labels import (
    HOST,
    HOST_MACHINE,
    HOST_PID,
    LAN_SUBNET,
    OWNER,
    OWNER_VALUE,
    ROLE,
    ROLE_LAN,
    lan_labels,
)
from worker.hosts import abandoned, owner
from worker.subnets import LanPair, SubnetLeases, engine_subnets

log = logging.getLogger(__name__)

# What compose made for a test's LAN (worker.compose._lan): the router is the only way out.
OPTIONS = {"com.docker.network.bridge.enable_ip_masquerade": "false"}
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


def network_name(host: str, subnet: str) -> str:
    """The engine name of `host`'s pool network for `subnet` (a short hash keeps two host
    names that differ only in unsafe characters apart)."""
    digest = hashlib.sha256(host.encode()).hexdigest()[:6]
    slug = _UNSAFE.sub("-", host).strip("-.")[:30] or "host"
    return f"hp-lan-{slug}-{digest}-{subnet.replace('/', '-')}"


@dataclass(frozen=True)
class LanNetworks:
    """The engine names of a test's two LAN networks."""

    dialer: str
    listener: str


class LanPool:
    """This host's pool networks for the pairs of one LAN pool."""

    def __init__(self, host: str, client: Callable[[], docker.DockerClient]):
        self.host = host
        self._client = client

    def lease(self, leases: SubnetLeases, holder: str) -> tuple[LanPair, LanNetworks]:
        """A free pair of subnets and its two networks, ready for a test: made if new, nothing
        attached. The lease is the caller's to release (or released here if this fails)."""
        pair = leases.acquire(holder, occupied=self.occupied())
        try:
            return pair, self.ready(pair)
        except BaseException:
            leases.release(pair)
            raise

    def warm(self, leases: SubnetLeases, pairs: int) -> int:
        """Make the networks of `pairs` free leases before any test needs them (a task process
        at its start: one lease for its test, one for the teardown still pending behind it);
        how many pairs are ready. The leases are held meanwhile, so no test shares them."""
        taken: list[LanPair] = []
        try:
            occupied = self.occupied()
            for _ in range(pairs):
                taken.append(leases.acquire("warming the LAN pool", occupied=occupied))
            for pair in taken:
                self.ready(pair)
        except (HolepunchError, DockerException) as exc:  # a test makes what is missing
            log.warning("LAN pool not warmed: %s", exc)
            return 0
        finally:
            for pair in taken:
                leases.release(pair)
        return len(taken)

    def occupied(self) -> list[str]:
        """The engine's IPv4 subnets a lease must avoid: every network's but this host's own pool
        networks (reused under their lease), those of a dead process of this host included."""
        return engine_subnets(self._client(), skip=self._reusable)

    def ready(self, pair: LanPair) -> LanNetworks:
        """The pair's two networks, made if missing (or not as this process would make them),
        with whatever a previous test left attached removed."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            dialer, listener = pool.map(self._ready, (pair.dialer, pair.listener))
        return LanNetworks(dialer, listener)

    # ------------------------------------------------------------------ internals

    def _reusable(self, labels: dict[str, str]) -> bool:
        if labels.get(OWNER) != OWNER_VALUE or labels.get(ROLE) != ROLE_LAN \
                or labels.get(HOST) != self.host:
            return False
        return (labels.get(HOST_MACHINE), labels.get(HOST_PID)) == owner() or abandoned(labels)

    def _ready(self, subnet: str) -> str:
        api = self._client().api
        name = network_name(self.host, subnet)
        try:
            attrs = api.inspect_network(name)
        except NotFound:
            return self._create(name, subnet)
        labels = attrs.get("Labels") or {}
        if not self._reusable(labels) or labels.get(LAN_SUBNET) != subnet:
            raise InfrastructureError(
                f"network {name} exists but is not a LAN network of host {self.host} for "
                f"{subnet} (labels {labels}); remove it or stop whoever made it")
        if attrs.get("Containers"):
            left = clear(self._client(), name)
            log.warning("LAN %s: removed what a previous test left attached: %s", subnet,
                        ", ".join(left) or "nothing")
            still = api.inspect_network(name).get("Containers") or {}
            if still:
                raise InfrastructureError(
                    f"LAN network {name} ({subnet}) still has containers attached that are no "
                    f"test's: {', '.join(c.get('Name', '?') for c in still.values())}")
        if not self._fits(attrs, subnet):
            remove(self._client(), name)  # a dead process's, or another shape: made anew
            return self._create(name, subnet)
        return name

    @staticmethod
    def _fits(attrs: dict, subnet: str) -> bool:
        configs = (attrs.get("IPAM") or {}).get("Config") or []
        options = attrs.get("Options") or {}
        labels = attrs.get("Labels") or {}
        return (attrs.get("Driver") == "bridge" and not attrs.get("Internal")
                and [c.get("Subnet") for c in configs] == [subnet]
                and all(options.get(k) == v for k, v in OPTIONS.items())
                and (labels.get(HOST_MACHINE), labels.get(HOST_PID)) == owner())

    def _create(self, name: str, subnet: str) -> str:
        try:
            self._client().api.create_network(
                name, driver="bridge", options=dict(OPTIONS),
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]),
                labels=lan_labels(self.host, subnet, owner()), check_duplicate=True)
        except APIError as exc:
            raise InfrastructureError(f"cannot make LAN network {name} ({subnet}): "
                                      f"{exc.explanation or exc}") from exc
        return name


def clear(client: docker.DockerClient, network: str) -> list[str]:
    """Remove the test containers attached to `network` (a teardown that failed, a killed
    process); what was removed. Anything else attached stays, and keeps the network."""
    removed = []
    for container in client.api.containers(all=True, filters={"network": network}):
        labels = container.get("Labels") or {}
        if labels.get(OWNER) != OWNER_VALUE or labels.get(ROLE) != "test":
            continue
        try:
            client.api.remove_container(container["Id"], force=True, v=True)
            removed.append(f"container {container['Names'][0].lstrip('/')}")
        except NotFound:
            pass
    return removed


def remove(client: docker.DockerClient, network: str) -> None:
    try:
        client.api.remove_network(network)
    except NotFound:
        pass
    except APIError as exc:
        raise InfrastructureError(f"cannot remove LAN network {network}: "
                                  f"{exc.explanation or exc}") from exc


def reap_lans(client: docker.DockerClient, host: str | None = None) -> list[str]:
    """Remove pool networks, with the test containers still attached to them: `host`'s, or
    (None) those of any host whose process is dead. What was removed."""
    labels = [f"{OWNER}={OWNER_VALUE}", f"{ROLE}={ROLE_LAN}"] + ([f"{HOST}={host}"] if host else [])
    removed: list[str] = []
    for network in client.api.networks(filters={"label": labels}):
        if host is None and not abandoned(network.get("Labels") or {}):
            continue
        removed += clear(client, network["Name"])
        try:
            remove(client, network["Name"])
            removed.append(f"network {network['Name']}")
        except InfrastructureError as exc:  # something not ours is attached: it stays
            log.warning("%s", exc)
    return removed
