"""A test's two NAT routers, started before the test is known: off its critical path.

Starting a container that joins two networks is the engine's slowest call here, and the engine
does such starts one after another: measured on this two-core host, one router start took
0.27 s alone and 0.8-1.0 s with four at once, and every test starts two before its clients can
start. Yet between two tests of a task process the routers differ only in their settings (the
NAT behaviour, the delay, the capture, PUBLIC_ALLOW), never in their shape (image, networks,
addresses, capabilities).

So while a test's clients run (mostly waiting on the network), the process takes the lease its
next test will use (worker.lanpool) and starts that test's two routers in standby
(router/router.sh, `ROUTER_STANDBY=stdin`): attached to the internet and to the lease's LANs at
the router's fixed address, with nothing configured, no rule loaded, no packet sent. The next
test adopts them (worker.project, `adopted`): its compose document is unchanged (it still
describes two routers as any re-run starts them), and "starting" an adopted router is writing
the test's own environment for it to its stdin; it then sets up as a cold one does and says so
in the test's log (`router: setting NAME=VALUE`).

What keeps a verdict honest: a warm router serves one test and is removed with it; its network
namespace never held a previous test (no conntrack entry, rule or route of another test); it is
adopted only when the test's router is the same in everything but its settings and labels
(`adoption`), otherwise it is removed and the test's own routers are started cold; and a warm
router that is not running any more is never adopted.

A task process also makes a cell at its start (`prewarm`), for the engine's newest router image
(a pass's images are built before its workers start): only the router image and the host's
internet shape a router or a holder, so its first test adopts it as well. A test that cannot use
a cell (a cgnat side) leaves it for the next; one of another router image has it removed.

A cell holds one lease and four idle containers per task process (at most three leases with
the test and the teardown behind it). It goes with the process (`close`, at its shutdown), with
the worker (`reap_warm`, at its shutdown: a killed process's), with the host (`holepunch-worker
--cleanup`, by the labels every test container carries) and, for a dead process, with the
reaper (worker.reaper), like any test's containers.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from docker.errors import APIError, DockerException, NotFound

from cluster.errors import HolepunchError
from cluster.labels import HOST, OWNER, OWNER_VALUE, test_labels
from cluster.network import PUBLIC_NETWORK
from worker.compose import TestSpec, compose_for
from worker.contracts import holder_name
from worker.hosts import owner
from worker.lanpool import LanNetworks
from worker.project import (
    NUMBER,
    ONE_OFF,
    PROJECT,
    SERVICE,
    Project,
    ProjectPlan,
    ServicePlan,
    plan_project,
)
from worker.services import fixed_addresses
from worker.subnets import LanPair

log = logging.getLogger(__name__)

ROUTERS = ("dialer_router", "listener_router")
HOLDERS = tuple(holder_name(side) for side in ("dialer", "listener"))
STANDBY = {"ROUTER_STANDBY": "stdin"}
WARM = "holepunch.warm"          # label of a standby router: its cell's project name
WARM_MARK = "warm routers"       # the worker log's line: "warm routers <test>: adopted"


@dataclass
class WarmCell:
    """One lease's routers in standby (and its namespace holders, if the test had them), made
    for the next test from the spec of an earlier one."""

    lans: LanPair
    networks: LanNetworks
    image: str                         # the routers' image (bare ID form, as plans name it)
    services: dict[str, ServicePlan]   # service -> the plan it was started from
    ids: dict[str, str]                # service -> container id
    release: Callable[[], None]        # the lease's release
    made_at: float


def warmable(plan: ProjectPlan, networks: LanNetworks | None) -> bool:
    """Whether a test like this one can have its routers warmed: one router per side between the
    internet and the test's own pool LAN (not a cgnat side, not a project making its own LANs)."""
    if networks is None:
        return False
    for name, lan in zip(ROUTERS, (networks.dialer, networks.listener), strict=True):
        service = next((s for s in plan.services if s.name == name), None)
        if service is None or service.joins or len(service.networks) != 2:
            return False
        (outside, address), (attached, _) = service.networks
        if outside != PUBLIC_NETWORK or address is not None or attached != lan:
            return False
    return True


def cell_plan(spec: TestSpec, lans: LanPair, networks: LanNetworks,
              labels: dict[str, str]) -> ProjectPlan:
    """What to start for the next test like `spec`, on the lease `lans`: its compose document's
    routers in standby (no settings but STANDBY) and its namespace holders as they are (a
    holder's settings are its lease's: its router's address), under a project name of their own."""
    nxt = replace(spec, dialer_lan=lans.dialer, listener_lan=lans.listener,
                  dialer_lan_network=networks.dialer, listener_lan_network=networks.listener)
    digest = hashlib.sha256(f"{spec.project}\0{lans.index}\0{time.time_ns()}".encode()).hexdigest()
    name = f"hp-warm-{lans.index}-{digest[:10]}"
    planned = plan_project(name, compose_for(nxt))
    services = []
    for service in planned.services:
        if service.name not in ROUTERS + HOLDERS:
            continue
        router = service.name in ROUTERS
        services.append(replace(
            service, environment=dict(STANDBY) if router else service.environment,
            labels={**labels, WARM: name, PROJECT: name, SERVICE: service.name,
                    ONE_OFF: "False", NUMBER: "1"},
            depends_on={}, stdin_open=router))
    return ProjectPlan(name, (), tuple(services))


def _shape(service: ServicePlan) -> ServicePlan:
    """What must be equal for a warm container to stand for a test's: all but its labels,
    container name and start order; for a router, its settings too, and the stdin it reads
    them from."""
    shape = replace(service, container="", labels={}, depends_on={}, stdin_open=False)
    return replace(shape, environment={}) if service.name in ROUTERS else shape


def adoption(plan: ProjectPlan, cell: WarmCell) -> dict[str, str] | None:
    """Service -> the cell's container for it, when each of the cell's is the plan's in shape;
    None otherwise (the cell's containers are then removed, not adopted)."""
    planned = {s.name: s for s in plan.services}
    for name, warm in cell.services.items():
        if name not in planned or _shape(planned[name]) != _shape(warm):
            return None
    return dict(cell.ids)


class WarmRouters:
    """This task process's cell: at most one, made in the background, taken by its next test.

    Its starts do not wait for the host's starting tests (as a teardown does, worker.teardown):
    measured, waiting up to 2 s changed nothing (3.23x and 1.36 s against 3.24x and 1.28 s,
    bench/overhead.py): a cell is started while its own test's clients begin to run, not when
    most others start."""

    def __init__(self) -> None:
        self._cell: WarmCell | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def take(self, client, image: str, usable: bool = True) -> WarmCell | None:
        """The cell, if one is ready for a test with this router image (a cell being made is
        waited for). A test that cannot use one (`usable` False: a cgnat side) leaves it for
        the next; a cell of another router image, or whose containers stopped, is removed in
        the background."""
        with self._lock:
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            if not usable:
                return None
            cell, self._cell = self._cell, None
        if cell is None:
            return None
        if cell.image != image or not _running(client, cell):
            threading.Thread(target=discard, args=(client, cell), daemon=True,
                             name="discard warm routers").start()
            return None
        return cell

    def prewarm(self, host) -> None:
        """Make a cell before this process's first test, for the newest router image the engine
        has (a task process at its start: the pass's routers were built before its workers)."""
        try:
            image = newest_router_image(host.services.client)
        except DockerException as exc:
            log.warning("warm routers not started: %s", exc)
            return
        if image is not None:  # the internet and the host guard first, as a test's would be
            self._start(host, partial(first_spec, host, image), host.services.prepare_network)

    def refill(self, host, spec: TestSpec, plan: ProjectPlan,
               networks: LanNetworks | None) -> None:
        """Start the routers of the next test like `spec` in the background; nothing when a cell
        is ready or being made, or when `plan`'s routers are not the warmable kind."""
        if warmable(plan, networks):
            self._start(host, lambda: spec)

    def _start(self, host, spec: Callable[[], TestSpec],
               before: Callable[[], None] = lambda: None) -> None:
        with self._lock:
            if self._cell is not None or self._thread is not None:
                return
            thread = threading.Thread(target=self._make, args=(host, spec, before),
                                      daemon=True, name="warm routers")
            self._thread = thread
            thread.start()

    def close(self, client) -> None:
        """Remove the cell (the process is going)."""
        with self._lock:
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            cell, self._cell = self._cell, None
        if cell is not None:
            discard(client, cell)

    def _make(self, host, spec: Callable[[], TestSpec], before: Callable[[], None]) -> None:
        client = host.services.client
        lans = None
        try:
            before()
            lans, networks = host.lans.lease(host.leases, "warm routers")
            plan = cell_plan(spec(), lans, networks, test_labels(host.name, owner()))
            project = Project(client, plan)
            try:
                ids = project.start_detached()
            except BaseException:
                _remove(client, list(project.containers.values()))
                raise
            held = lans
            self._cell = WarmCell(lans, networks, plan.service(ROUTERS[0]).image,
                                  {s.name: s for s in plan.services}, ids,
                                  release=lambda: host.leases.release(held),
                                  made_at=time.monotonic())
            lans = None  # the cell's now
        except (HolepunchError, DockerException) as exc:  # the next test starts its own
            log.warning("warm routers not started: %s", exc)
        finally:
            if lans is not None:
                host.leases.release(lans)


ROUTER_IMAGES = "org.holepunch.component=router"  # router/Dockerfile's LABEL


def newest_router_image(client) -> str | None:
    """The engine's newest router image (`sha256:<hex>`), or None."""
    images = client.api.images(filters={"label": ROUTER_IMAGES})
    return max(images, key=lambda image: image.get("Created", 0))["Id"] if images else None


def first_spec(host, router_image: str) -> TestSpec:
    """A test of one router per side, for a cell made before any test came: only its routers'
    and holders' shape is taken (cell_plan), and nothing of that depends on the test but the
    router image and the host's internet."""
    redis_ip, _, _ = fixed_addresses(host.public_subnet)
    return TestSpec(test_name="warm routers", pass_id="warm", dialer_image=router_image,
                    listener_image=router_image, router_image=router_image, transport="tcp",
                    redis_addr=f"{redis_ip}:6379", test_key="warm", public_subnet=host.public_subnet,
                    dialer_lan="10.255.0.0/24", listener_lan="10.255.1.0/24")


def _running(client, cell: WarmCell) -> bool:
    try:
        return all((client.api.inspect_container(cid).get("State") or {}).get("Running")
                   for cid in cell.ids.values())
    except DockerException:
        return False


def _remove(client, ids: list[str]) -> None:
    for container in ids:
        try:
            client.api.remove_container(container, force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            log.warning("cannot remove warm router %s: %s", container[:12], exc)


def discard(client, cell: WarmCell) -> None:
    """Remove a cell's routers and release its lease."""
    try:
        _remove(client, list(cell.ids.values()))
    finally:
        cell.release()


def remove_routers(client, cell: WarmCell) -> None:
    """Remove a cell's routers but keep its lease: the test that took it starts its own there."""
    _remove(client, list(cell.ids.values()))


PROCESS = WarmRouters()  # the task process's own


def reap_warm(client, host: str) -> list[str]:
    """Remove `host`'s routers in standby (at the worker's shutdown, once its task processes are
    gone: a process killed before its `close` leaves its cell); what was removed."""
    found = client.api.containers(all=True, filters={"label": [
        f"{OWNER}={OWNER_VALUE}", f"{HOST}={host}", WARM]})
    _remove(client, [c["Id"] for c in found])
    return [f"container {c['Names'][0].lstrip('/')}" for c in found]
