"""A host's global services: the simulated internet, one Redis and one relay, shared by its tests.

`ensure` is idempotent and cheap when all is healthy, so every task calls it: a Redis or relay
that died since the last test is noticed and restarted before the test's clients start.

Redis and the relay sit at fixed addresses of the simulated internet (`fixed_addresses`), so a
test can write its compose file and set up its routers while they are still starting: only the
clients need them. The network has a lock of its own for that reason: a test waits for the
network, not for a Redis or relay another process is starting.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, replace

import docker
import redis
from docker.errors import DockerException, NotFound

from cluster.errors import InfrastructureError
from cluster.imageid import image_ref
from worker.guard import install_guard, remove_guard
from cluster.labels import HOST, OWNER, OWNER_VALUE, ROLE, global_labels
from worker.locks import host_lock
from cluster.network import DEFAULT_PUBLIC_SUBNET, PUBLIC_NETWORK, REDIS_PORT, TRANSPORTS

REDIS_NAME = "hole-punch-redis"
GUARD_RECHECK_S = 60.0
RELAY_NAME = "hole-punch-relay"


@dataclass(frozen=True)
class Services:
    redis_ip: str
    relay_ip: str
    relay_addrs: dict[str, str]  # transport -> /ip4/.../p2p/<relay id>; {} until published
    relay_container: str = ""

    @property
    def redis_addr(self) -> str:
        return f"{self.redis_ip}:{REDIS_PORT}"

    def redis(self) -> redis.Redis:
        return redis.Redis(host=self.redis_ip, port=REDIS_PORT, socket_timeout=5,
                           socket_connect_timeout=3, decode_responses=True)


def fixed_addresses(public_subnet: str) -> tuple[str, str, str]:
    """(Redis's IP, the relay's IP, the range the engine hands out to everyone else) on the
    simulated internet: the first two hosts after the gateway, and the subnet's upper half."""
    network = ipaddress.IPv4Network(public_subnet)
    if network.prefixlen > 28:
        raise ValueError(f"{public_subnet} is too small: a /28 or larger is needed")
    dynamic = list(network.subnets(prefixlen_diff=1))[1]
    return str(network.network_address + 2), str(network.network_address + 3), str(dynamic)


def _published(store: redis.Redis) -> dict[str, str] | None:
    """The relay's addresses once it has published one per transport."""
    addrs = {t: store.get(f"RELAY_{t.upper()}_ADDRESS") for t in TRANSPORTS}
    return addrs if all(addrs.values()) else None


def wait_until(what: str, probe, timeout: float, interval: float = 0.1):
    """Poll `probe` until it returns a truthy value; its exceptions mean "not yet"."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a probe failing is the "not yet" answer
            last = exc
        time.sleep(interval)
    raise InfrastructureError(f"{what}: not ready after {timeout:.0f} s"
                              + (f" (last error: {last})" if last else ""))


class GlobalServices:
    def __init__(self, host: str, public_subnet: str = DEFAULT_PUBLIC_SUBNET,
                 lan_pool: str = "10.201.0.0/16", client: docker.DockerClient | None = None):
        self.host = host
        self.public_subnet = public_subnet
        self.lan_pool = lan_pool
        self._client = client
        self._guard_checked = -GUARD_RECHECK_S  # never yet

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=60)
                self._client.ping()
            except DockerException as exc:
                self._client = None
                raise InfrastructureError(f"Docker engine not reachable: {exc}") from exc
        return self._client

    @property
    def addresses(self) -> Services:
        """Where Redis and the relay are (or will be); no relay addresses yet."""
        redis_ip, relay_ip, _ = fixed_addresses(self.public_subnet)
        return Services(redis_ip, relay_ip, {})

    def prepare_network(self) -> Services:
        """The simulated internet and the host guard, made if missing; the services' fixed
        addresses. Enough for a test to set up its project while Redis and the relay start.

        The guard's iptables rules are checked at most once every GUARD_RECHECK_S per process
        (four iptables runs, under a host-wide lock, were a tenth of a second of every test with
        four at once); only this host's own shutdown removes them."""
        with host_lock("public-network"):
            if time.monotonic() >= self._guard_checked + GUARD_RECHECK_S:
                install_guard(self.lan_pool, self.public_subnet)
                self._guard_checked = time.monotonic()
            self._ensure_network()
        return self.addresses

    def ensure(self, base_image: str, relay_image: str, network_ready: bool = False) -> Services:
        """Start what is missing or dead; return the addresses tests need, once the relay
        has published its own. `network_ready`: the caller has just prepared the network."""
        services = self.start(base_image, relay_image, network_ready)
        return replace(services, relay_addrs=self.relay_addrs(services))

    def start(self, base_image: str, relay_image: str, network_ready: bool = False) -> Services:
        """Start what is missing or dead, without waiting for the relay to publish its addresses
        (`relay_addrs` is empty until it has: `relay_addrs()` waits for them)."""
        redis_ip, relay_ip, _ = fixed_addresses(self.public_subnet)
        if not network_ready:
            self.prepare_network()
        with host_lock("global-services"):
            _, new_redis = self._ensure_container(
                REDIS_NAME, base_image, ["redis-server", "--protected-mode", "no", "--save", "",
                                         "--appendonly", "no"], {}, address=redis_ip)
            store = redis.Redis(host=redis_ip, port=REDIS_PORT, socket_timeout=2,
                                decode_responses=True)
            wait_until(f"Redis at {redis_ip}", store.ping, timeout=20, interval=0.05)
            if new_redis:
                self._remove(RELAY_NAME)  # it published its addresses into the old Redis
            relay = self._running(RELAY_NAME, relay_image)
            if relay is None:
                # A new relay has a new peer id: its predecessor's addresses must not be read.
                store.delete(*(f"RELAY_{t.upper()}_ADDRESS" for t in TRANSPORTS))
                relay, _ = self._ensure_container(RELAY_NAME, relay_image, None,
                                                  {"REDIS_ADDR": f"{redis_ip}:{REDIS_PORT}"},
                                                  cap_add=["NET_ADMIN"], address=relay_ip)
            return Services(redis_ip, relay_ip, _published(store) or {}, relay.id)

    def relay_addrs(self, services: Services) -> dict[str, str]:
        """The relay's addresses, waiting for it to publish them (outside the host lock)."""
        if services.relay_addrs:
            return services.relay_addrs
        relay = self.client.containers.get(services.relay_container)
        store = services.redis()

        def published() -> dict[str, str] | None:  # an error is kept as wait_until's last
            relay.reload()
            if relay.status != "running":
                logs = relay.logs(tail=20).decode(errors="replace")
                raise InfrastructureError(f"relay exited: {logs}")
            return _published(store)
        return wait_until("relay publishing RELAY_TCP_ADDRESS and RELAY_QUIC_ADDRESS",
                          published, timeout=30, interval=0.05)

    def stop(self) -> list[str]:
        """Remove the services this host started (another host's, sharing the engine, stay).

        Not while another host's tests run on the simulated internet: workers sharing one engine
        (an embedded submit beside a running worker) share its one Redis and relay, whose names
        are fixed, and removing them breaks those tests mid-run. Then everything stays, and the
        hosts whose tests kept it are returned; `--cleanup` removes it later.
        """
        with host_lock("global-services"):
            users = self.other_hosts_testing()
            if users:
                return users
            for name in (RELAY_NAME, REDIS_NAME):
                try:
                    container = self.client.containers.get(name)
                except NotFound:
                    continue
                if (container.labels or {}).get(HOST) == self.host:
                    container.remove(force=True, v=True)
            try:
                network = self.client.networks.get(PUBLIC_NETWORK)
            except NotFound:
                return []
            if (network.attrs.get("Labels") or {}).get(HOST) != self.host:
                return []
            try:
                network.remove()
            except DockerException as exc:  # still in use: another host's services or a test
                raise InfrastructureError(f"cannot remove {PUBLIC_NETWORK}: {exc}") from exc
            remove_guard(self.lan_pool, self.public_subnet)
            self._guard_checked = -GUARD_RECHECK_S
        return []

    def other_hosts_testing(self) -> list[str]:
        """Hosts other than this one whose test containers are on the simulated internet."""
        attached = self.client.containers.list(all=True, ignore_removed=True, filters={
            "network": PUBLIC_NETWORK, "label": [f"{OWNER}={OWNER_VALUE}", f"{ROLE}=test"]})
        return sorted({(c.labels or {}).get(HOST, "?") for c in attached} - {self.host})

    # ------------------------------------------------------------------ internals

    def _ensure_network(self) -> None:
        """The internal network of the simulated internet, with the upper half of its subnet
        for the engine to hand out (the fixed addresses sit below it)."""
        _, _, dynamic = fixed_addresses(self.public_subnet)
        try:
            network = self.client.networks.get(PUBLIC_NETWORK)
        except NotFound:
            self.client.networks.create(
                PUBLIC_NETWORK, driver="bridge", internal=True, labels=global_labels(self.host),
                ipam=docker.types.IPAMConfig(pool_configs=[
                    docker.types.IPAMPool(subnet=self.public_subnet, iprange=dynamic)]))
            return
        labels = network.attrs.get("Labels") or {}
        configs = network.attrs.get("IPAM", {}).get("Config") or []
        pools = [(c.get("Subnet"), c.get("IPRange")) for c in configs]
        if labels.get(OWNER) == OWNER_VALUE and network.attrs.get("Internal") \
                and pools == [(self.public_subnet, dynamic)]:
            return
        if labels.get(OWNER) == OWNER_VALUE and not network.attrs.get("Containers"):
            network.remove()  # ours, unused, from an older layout: make it anew
            self._ensure_network()
            return
        raise InfrastructureError(
            f"network {PUBLIC_NETWORK} exists but is not a worker's internal {self.public_subnet} "
            f"network with range {dynamic} (labels {labels}, subnets and ranges {pools}); "
            f"remove it (holepunch-worker --cleanup) or stop whoever made it")

    def _running(self, name: str, image: str):
        """The container `name` if it runs `image`; else None, with any stale one removed."""
        try:
            container = self.client.containers.get(name)
        except NotFound:
            return None
        if container.status == "running" and container.image.id == image_ref(image):
            return container
        container.remove(force=True, v=True)
        return None

    def _ensure_container(self, name: str, image: str, command, environment: dict[str, str],
                          address: str, cap_add: list[str] | None = None):
        """(container, created): the running one, or a new one at its fixed `address`."""
        container = self._running(name, image)
        if container is not None:
            return container, False
        endpoint = self.client.api.create_endpoint_config(ipv4_address=address)
        return self.client.containers.run(
            image_ref(image), command, name=name, network=PUBLIC_NETWORK, detach=True, init=True,
            networking_config={PUBLIC_NETWORK: endpoint}, environment=environment,
            cap_add=cap_add or [], labels=global_labels(self.host)), True

    def _remove(self, name: str) -> None:
        try:
            self.client.containers.get(name).remove(force=True, v=True)
        except NotFound:
            pass
