"""A host's global services: the simulated internet, and a Redis and a relay shared by its tests.

`ensure` is idempotent and cheap when all is healthy, so every task calls it: a Redis or relay
that died since the last test is noticed and restarted before the test's clients start.

Several worker hosts may share one engine (two embedded `submit`s at once, from checkouts whose
relay or base images differ). Redis and the relay are therefore a *service set* per pair of
images (`set_key`): containers `hole-punch-redis-<key>` and `hole-punch-relay-<key>` at the
addresses of the set's slot (`fixed_addresses`), shared by every host that runs those images and
never replaced by a host that runs others. Slots are reserved in the run directory, under a lock.

The set's addresses are known before it starts, so a test can write its compose file and set up
its routers while Redis and the relay are still starting: only the clients need them. The network
has a lock of its own for that reason: a test waits for the network, not for a Redis or relay
another process is starting.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from dataclasses import dataclass, replace
from pathlib import Path

import docker
import redis
from docker.errors import DockerException, NotFound

from cluster.errors import InfrastructureError
from cluster.imageid import bare_image_id, image_ref
from cluster.labels import HOST, OWNER, OWNER_VALUE, ROLE, SERVICES, SERVICES_SLOT, global_labels
from cluster.network import DEFAULT_PUBLIC_SUBNET, PUBLIC_NETWORK, REDIS_PORT, TRANSPORTS
from worker.guard import install_guard, remove_guard
from worker.hosts import live_hosts, owner
from worker.lanpool import reap_lans
from worker.locks import host_lock, run_dir
from worker.routes import check_routes

REDIS_NAME = "hole-punch-redis"   # + "-<set key>"
GUARD_RECHECK_S = 60.0
RELAY_NAME = "hole-punch-relay"
MAX_SETS = 32                     # service sets at once on one engine
STALE_RESERVATION_S = 600         # a reserved slot with no containers this long is free again


@dataclass(frozen=True)
class Services:
    redis_ip: str
    relay_ip: str
    relay_addrs: dict[str, str]  # transport -> /ip4/.../p2p/<relay id>; {} until published
    relay_container: str = ""
    key: str = ""                # the service set (set_key of its images)

    @property
    def redis_addr(self) -> str:
        return f"{self.redis_ip}:{REDIS_PORT}"

    def redis(self) -> redis.Redis:
        return redis.Redis(host=self.redis_ip, port=REDIS_PORT, socket_timeout=5,
                           socket_connect_timeout=3, decode_responses=True)


def set_key(base_image: str, relay_image: str) -> str:
    """The service set of a pair of images: Redis runs on the base image, the relay on its own."""
    pair = f"{bare_image_id(base_image)}\n{bare_image_id(relay_image)}"
    return hashlib.sha256(pair.encode()).hexdigest()[:12]


def slot_capacity(public_subnet: str) -> int:
    network = ipaddress.IPv4Network(public_subnet)
    return max(0, min(MAX_SETS, (network.num_addresses // 2 - 2) // 2))


def fixed_addresses(public_subnet: str, slot: int = 0) -> tuple[str, str, str]:
    """(Redis's IP, the relay's IP, the range the engine hands out to everyone else) on the
    simulated internet for service set `slot`: two hosts per slot after the gateway, all in the
    lower half of the subnet, the engine's range its upper half."""
    network = ipaddress.IPv4Network(public_subnet)
    if network.prefixlen > 28:
        raise ValueError(f"{public_subnet} is too small: a /28 or larger is needed")
    if not 0 <= slot < slot_capacity(public_subnet):
        raise ValueError(f"service set slot {slot} outside {public_subnet} "
                         f"({slot_capacity(public_subnet)} slots)")
    dynamic = list(network.subnets(prefixlen_diff=1))[1]
    first = network.network_address + 2 + 2 * slot
    return str(first), str(first + 1), str(dynamic)


def choose_slot(key: str, reserved: dict[int, str], capacity: int) -> int | None:
    """The slot `key` holds already, else the lowest free one; None when all are taken."""
    for slot, holder in sorted(reserved.items()):
        if holder == key:
            return slot
    return next((slot for slot in range(capacity) if slot not in reserved), None)


def _published(store: redis.Redis) -> dict[str, str] | None:
    """The relay's addresses once it has published one per transport."""
    addrs = {t: store.get(f"RELAY_{t.upper()}_ADDRESS") for t in TRANSPORTS}
    published = {t: addr for t, addr in addrs.items() if isinstance(addr, str) and addr}  # decoded
    return published if len(published) == len(addrs) else None


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
        self._held: dict[str, int] = {}  # set key -> its slot, once reserved by this process
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

    def prepare_network(self) -> None:
        """The simulated internet and the host guard, made if missing.

        The guard's iptables rules, and the host's routes into the subnet (worker.routes), are
        checked at most once every GUARD_RECHECK_S per process
        (four iptables runs, under a host-wide lock, were a tenth of a second of every test with
        four at once); only this host's own shutdown removes them."""
        with host_lock("public-network"):
            if time.monotonic() >= self._guard_checked + GUARD_RECHECK_S:
                install_guard(self.lan_pool, self.public_subnet)
                check_routes(self.client, self.public_subnet)
                self._guard_checked = time.monotonic()
            self._ensure_network()

    def prepare(self, base_image: str, relay_image: str) -> Services:
        """The network, and where the service set of these images is (or will be): enough for
        a test to set up its project while Redis and the relay start. No relay addresses yet."""
        self.prepare_network()
        key = set_key(base_image, relay_image)
        redis_ip, relay_ip, _ = fixed_addresses(self.public_subnet, self.reserve(key))
        return Services(redis_ip, relay_ip, {}, key=key)

    def ensure(self, base_image: str, relay_image: str, network_ready: bool = False) -> Services:
        """Start what is missing or dead; return the addresses tests need, once the relay
        has published its own. `network_ready`: the caller has just prepared the network."""
        services = self.start(base_image, relay_image, network_ready)
        return replace(services, relay_addrs=self.relay_addrs(services))

    def start(self, base_image: str, relay_image: str, network_ready: bool = False) -> Services:
        """Start the service set of these images where it is missing or dead, without waiting
        for the relay to publish its addresses (`relay_addrs()` waits for them). `network_ready`:
        the caller has just prepared the network."""
        if not network_ready:
            self.prepare_network()
        key = set_key(base_image, relay_image)
        slot = self.reserve(key)
        redis_ip, relay_ip, _ = fixed_addresses(self.public_subnet, slot)
        redis_name, relay_name = f"{REDIS_NAME}-{key}", f"{RELAY_NAME}-{key}"
        with host_lock("global-services"):
            _, new_redis = self._ensure_container(
                redis_name, base_image, ["redis-server", "--protected-mode", "no", "--save", "",
                                         "--appendonly", "no"], {}, address=redis_ip,
                key=key, slot=slot)
            store = redis.Redis(host=redis_ip, port=REDIS_PORT, socket_timeout=2,
                                decode_responses=True)
            wait_until(f"Redis at {redis_ip}", store.ping, timeout=20, interval=0.05)
            if new_redis:
                self._remove(relay_name)  # it published its addresses into the old Redis
            relay = self._running(relay_name, relay_image)
            if relay is None:
                # A new relay has a new peer id: its predecessor's addresses must not be read.
                store.delete(*(f"RELAY_{t.upper()}_ADDRESS" for t in TRANSPORTS))
                relay, _ = self._ensure_container(relay_name, relay_image, None,
                                                  {"REDIS_ADDR": f"{redis_ip}:{REDIS_PORT}"},
                                                  cap_add=["NET_ADMIN"], address=relay_ip,
                                                  key=key, slot=slot)
            return Services(redis_ip, relay_ip, _published(store) or {}, relay.id, key)

    # ------------------------------------------------------------------ service set slots

    @property
    def _slots(self) -> Path:
        path = run_dir() / "service-sets" / self.public_subnet.replace("/", "_")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def reserved(self) -> dict[int, str]:
        """slot -> set key: the reservations in the run directory, and what the engine runs
        (a set started by a host with another run directory; an older layout's unkeyed
        Redis and relay hold slot 0)."""
        taken: dict[int, str] = {}
        for entry in self._slots.iterdir():
            if entry.name.isdigit():
                taken[int(entry.name)] = entry.read_text(encoding="utf-8").strip()
        for container in self.client.api.containers(all=True, filters={
                "label": [f"{OWNER}={OWNER_VALUE}", f"{ROLE}=global"]}):
            labels = container.get("Labels") or {}
            slot = labels.get(SERVICES_SLOT, "0")
            if slot.isdigit():
                taken.setdefault(int(slot), labels.get(SERVICES, "unkeyed"))
        return taken

    def reserve(self, key: str) -> int:
        """The slot of service set `key`: the one it holds, else the lowest free one. Kept per
        process once reserved (no engine call per test): a set's slot changes only when the
        last live host removes every set, and this host is alive."""
        if key in self._held:
            return self._held[key]
        capacity = slot_capacity(self.public_subnet)
        with host_lock("service-slots"):
            slot = choose_slot(key, self.reserved(), capacity)
            if slot is None:
                self._free_stale_reservations()
                slot = choose_slot(key, self.reserved(), capacity)
            if slot is None:
                raise InfrastructureError(
                    f"no free service set slot on {self.public_subnet}: {capacity} sets of "
                    f"other images run on this engine (holepunch-worker --cleanup removes "
                    f"unused ones)")
            path = self._slots / str(slot)
            if not path.exists():
                path.write_text(key, encoding="utf-8")
            self._held[key] = slot
            return slot

    def _free_stale_reservations(self) -> None:
        running = {(c.get("Labels") or {}).get(SERVICES) for c in self.client.api.containers(
            all=True, filters={"label": [f"{OWNER}={OWNER_VALUE}", f"{ROLE}=global"]})}
        for entry in self._slots.iterdir():
            if entry.name.isdigit() and entry.read_text(encoding="utf-8").strip() not in running \
                    and time.time() - entry.stat().st_mtime > STALE_RESERVATION_S:
                entry.unlink(missing_ok=True)

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
        """Remove this host's LAN pool networks (worker.lanpool: always, they are its own), then
        the service sets, the network and the host guard, unless another host needs
        them: a live host registered on this engine (hosts.live_hosts: another embedded
        `submit`, a worker beside it), or another host's tests on the simulated internet. Then
        everything stays, and those hosts are returned; the last host to stop removes it all,
        every set included (a set is shared by every host running its images)."""
        reap_lans(self.client, self.host)
        with host_lock("global-services"):
            users = sorted((live_hosts() - {self.host}) | set(self.other_hosts_testing()))
            if users:
                return users
            for container in self.client.containers.list(all=True, ignore_removed=True, filters={
                    "label": [f"{OWNER}={OWNER_VALUE}", f"{ROLE}=global"]}):
                try:
                    container.remove(force=True, v=True)
                except NotFound:
                    pass
            with host_lock("service-slots"):
                for entry in self._slots.iterdir():
                    entry.unlink(missing_ok=True)
            self._held.clear()
            try:
                network = self.client.networks.get(PUBLIC_NETWORK)
            except NotFound:
                return []
            if (network.attrs.get("Labels") or {}).get(OWNER) != OWNER_VALUE:
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
        if (container.status == "running" and container.image is not None
                and container.image.id == image_ref(image)):
            return container
        container.remove(force=True, v=True)
        return None

    def _ensure_container(self, name: str, image: str, command, environment: dict[str, str],
                          address: str, key: str, slot: int, cap_add: list[str] | None = None):
        """(container, created): the running one, or a new one at its fixed `address`."""
        container = self._running(name, image)
        if container is not None:
            return container, False
        endpoint = self.client.api.create_endpoint_config(ipv4_address=address)
        return self.client.containers.run(
            image_ref(image), command, name=name, network=PUBLIC_NETWORK, detach=True, init=True,
            networking_config={PUBLIC_NETWORK: endpoint}, environment=environment,
            cap_add=cap_add or [],
            labels=global_labels(self.host, key, slot, owner())), True

    def _remove(self, name: str) -> None:
        try:
            self.client.containers.get(name).remove(force=True, v=True)
        except NotFound:
            pass
