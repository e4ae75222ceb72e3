"""The labels on every container and network we start, so a crashed run can be found and removed."""

from __future__ import annotations

OWNER = "holepunch.owner"      # "worker" for all a worker starts
ROLE = "holepunch.role"        # "global" (network, Redis, relay), "test" (a test's project) or
                               # "lan" (a LAN network of the host's pool, kept across tests)
HOST = "holepunch.host"        # the worker host's name
PASS = "holepunch.pass"        # set by worker.compose on a test's containers and networks
TEST = "holepunch.test"
# The worker process that made it, and the machine that pid belongs to (boot id and pid
# namespace): a start-up clean-up removes another host's tests only when that process is dead.
HOST_PID = "holepunch.host.pid"
HOST_MACHINE = "holepunch.host.machine"
SERVICES = "holepunch.services"       # the service set (Redis + relay) a container is or uses
SERVICES_SLOT = "holepunch.services.slot"
REDIS_ADDR = "holepunch.redis"        # on a test's containers: where its Redis keys are
LAN_SUBNET = "holepunch.lan"          # on a pool LAN network (worker.lanpool): its subnet

OWNER_VALUE = "worker"
ROLE_LAN = "lan"


def global_labels(host: str, services: str | None = None, slot: int | None = None,
                  owner: tuple[str, str] | None = None) -> dict[str, str]:
    labels = {OWNER: OWNER_VALUE, ROLE: "global", HOST: host}
    if services is not None:
        labels[SERVICES] = services
    if slot is not None:
        labels[SERVICES_SLOT] = str(slot)
    if owner is not None:
        labels[HOST_MACHINE], labels[HOST_PID] = owner
    return labels


def test_labels(host: str, owner: tuple[str, str] | None = None) -> dict[str, str]:
    labels = {OWNER: OWNER_VALUE, ROLE: "test", HOST: host}
    if owner is not None:
        labels[HOST_MACHINE], labels[HOST_PID] = owner
    return labels


def lan_labels(host: str, subnet: str, owner: tuple[str, str]) -> dict[str, str]:
    """A LAN network of the host's pool (worker.lanpool): the worker process that made it."""
    machine, pid = owner
    return {OWNER: OWNER_VALUE, ROLE: ROLE_LAN, HOST: host, LAN_SUBNET: subnet,
            HOST_MACHINE: machine, HOST_PID: pid}


PROBE = "holepunch.probe"      # the run id of a `nat-probe` (its own networks and containers)
PROBE_PID = "holepunch.probe.pid"  # the probe's process, on HOST: a dead one's run is removed
PROBE_OWNER_VALUE = "nat-probe"


def probe_labels(run_id: str, host: str, pid: int) -> dict[str, str]:
    return {OWNER: PROBE_OWNER_VALUE, ROLE: "probe", PROBE: run_id, HOST: host, PROBE_PID: str(pid)}
