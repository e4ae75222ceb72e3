"""worker.warmrouters: which routers may be warmed, what a cell is started as, and when a test
adopts one; worker.project's side of it (an adopted service's start is its settings on stdin).
Pure, or against a fake engine API; the real engine runs it in tests/e2e/clients/test_warm_routers.py."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from cluster.errors import ConfigError
from cluster.network import PUBLIC_NETWORK
from tests.worker.test_compose import spec
from tests.worker.test_project import FakeClient, FakeEngineAPI
from worker.compose import compose_for
from worker.lanpool import LanNetworks
from worker.project import PROJECT, Project, plan_project, standby_settings
from worker.subnets import LanPair
from worker.warmrouters import (
    WARM,
    WarmCell,
    WarmRouters,
    adoption,
    cell_plan,
    first_spec,
    warmable,
)

POOL = LanNetworks("hp-lan-h-0-10.201.0.0-24", "hp-lan-h-0-10.201.1.0-24")
NEXT_LANS = LanPair(index=3, dialer="10.201.6.0/24", listener="10.201.7.0/24")
NEXT_POOL = LanNetworks("hp-lan-h-0-10.201.6.0-24", "hp-lan-h-0-10.201.7.0-24")
OWNER_LABELS = {"holepunch.owner": "worker", "holepunch.role": "test", "holepunch.host": "h"}


def pooled(**changes):
    return spec(dialer_lan_network=POOL.dialer, listener_lan_network=POOL.listener, **changes)


def plan_of(test_spec, name: str = "hp-test"):
    return plan_project(name, compose_for(test_spec))


def cell_for(test_spec, ids_prefix: str = "warm") -> WarmCell:
    """A cell as WarmRouters would make it for the next test like `test_spec`."""
    plan = cell_plan(test_spec, NEXT_LANS, NEXT_POOL, OWNER_LABELS)
    return WarmCell(NEXT_LANS, NEXT_POOL, plan.service("dialer_router").image,
                    {s.name: s for s in plan.services},
                    {s.name: f"{ids_prefix}-{s.name}" for s in plan.services},
                    release=lambda: None, made_at=time.monotonic())


def next_test(**changes):
    """The next test, on the cell's lease (unless `changes` say otherwise)."""
    base = dict(dialer_lan=NEXT_LANS.dialer, listener_lan=NEXT_LANS.listener,
                dialer_lan_network=NEXT_POOL.dialer, listener_lan_network=NEXT_POOL.listener)
    return spec(**{**base, **changes})


def test_a_cell_is_the_next_tests_routers_in_standby_on_the_new_lease() -> None:
    plan = cell_plan(pooled(delay_ms=25, evidence=True), NEXT_LANS, NEXT_POOL, OWNER_LABELS)
    assert [s.name for s in plan.services] == ["dialer_router", "listener_router"]
    router = plan.service("dialer_router")
    assert router.environment == {"ROUTER_STANDBY": "stdin"}  # no setting of the first test
    assert router.stdin_open and router.depends_on == {}
    assert router.networks == ((PUBLIC_NETWORK, None), (NEXT_POOL.dialer, "10.201.6.2"))
    assert plan.service("listener_router").networks[1] == (NEXT_POOL.listener, "10.201.7.2")
    assert router.labels[WARM] == plan.name == router.labels[PROJECT]
    assert plan.name.startswith("hp-warm-3-") and router.container == f"{plan.name}_dialer_router_1"
    assert {k: router.labels[k] for k in OWNER_LABELS} == OWNER_LABELS  # reaped as the host's


def test_a_cells_holders_are_started_as_planned_for_the_new_lease() -> None:
    plan = cell_plan(pooled(holders_for_ours=True), NEXT_LANS, NEXT_POOL, OWNER_LABELS)
    holder = plan.service("dialer_netns")
    assert holder.environment["ROUTER_ADDR"] == "10.201.6.2"  # the new lease's router
    assert holder.networks == ((NEXT_POOL.dialer, "10.201.6.3"),) and not holder.stdin_open
    assert {s.name for s in plan.services} == {"dialer_router", "listener_router",
                                               "dialer_netns", "listener_netns"}


def test_only_one_router_per_side_on_the_pool_lans_is_warmed() -> None:
    assert warmable(plan_of(pooled()), POOL)
    assert not warmable(plan_of(spec()), None)  # the project makes its own LANs
    cgnat = pooled(dialer_nat="cgnat", dialer_carrier="100.64.0.0/24")
    assert not warmable(plan_of(cgnat), POOL)


def test_the_next_test_adopts_a_cell_whatever_its_settings() -> None:
    cell = cell_for(pooled())
    plan = plan_of(next_test(delay_ms=25, evidence=True, listener_nat="symmetric",
                             public_allow=("11.11.0.3",), test_name="another x test (tcp)"))
    assert adoption(plan, cell) == {"dialer_router": "warm-dialer_router",
                                    "listener_router": "warm-listener_router"}


@pytest.mark.parametrize("changes, why", [
    (dict(router_image="d" * 64), "another router image"),
    (dict(dialer_nat="cgnat", dialer_carrier="100.64.0.0/24"), "a two-router side"),
    (dict(dialer_lan_network="hp-lan-elsewhere"), "another LAN network"),
    (dict(dialer_lan="10.201.8.0/24"), "another router address"),
])
def test_a_cell_that_differs_in_shape_is_not_adopted(changes, why) -> None:
    assert adoption(plan_of(next_test(**changes)), cell_for(pooled())) is None, why


def test_holders_are_adopted_only_with_the_same_settings() -> None:
    cell = cell_for(pooled(holders_for_ours=True))
    assert set(adoption(plan_of(next_test(holders_for_ours=True)), cell)) == set(cell.ids)
    assert adoption(plan_of(next_test()), cell) is None  # the cell's holders would sit in its LAN
    cell.services["dialer_netns"].environment["ROUTER_ADDR"] = "10.201.6.9"
    assert adoption(plan_of(next_test(holders_for_ours=True)), cell) is None


def test_standby_settings_are_lines_ended_by_an_empty_one() -> None:
    assert standby_settings({"DELAY_MS": "50", "PUBLIC_ALLOW": "11.11.0.2,11.11.0.3"}) == \
        b"DELAY_MS=50\nPUBLIC_ALLOW=11.11.0.2,11.11.0.3\n\n"
    for bad in ({"A": "x\ny"}, {"A=B": "x"}, {"A": "x\r"}):
        with pytest.raises(ConfigError):
            standby_settings(bad)


class FakeSocket:
    def __init__(self, sent: list[bytes]) -> None:
        self.sent = sent

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.sent.append(b"<closed>")


class AdoptingEngineAPI(FakeEngineAPI):
    """The fake engine, with warm containers that exist before the project (their ids given)."""

    def __init__(self, warm: dict[str, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.names.update({container: container for container in warm.values()})
        self.stdin: dict[str, list[bytes]] = {}

    def attach_socket(self, container, params):
        assert params == {"stdin": 1, "stream": 1}
        self.calls.append(f"settings {container}")
        return FakeSocket(self.stdin.setdefault(container, []))


def test_an_adopted_router_is_not_created_and_starts_by_its_settings_on_stdin() -> None:
    test_spec = next_test(delay_ms=25)
    plan = plan_of(test_spec, "p")
    warm = {"dialer_router": "warm-d_dialer_router_1", "listener_router": "warm-l_listener_router_1"}
    api = AdoptingEngineAPI(warm, dialer_exit=0)
    project = Project(FakeClient(api), plan, adopted=warm)
    assert project.up(timeout=30).exit_code == 0
    assert not any(c.startswith("create") and "router" in c for c in api.calls)
    assert "start warm-d_dialer_router_1" not in api.calls
    sent = b"".join(api.stdin["warm-d_dialer_router_1"][:-1])
    assert b"DELAY_MS=25\n" in sent and sent.endswith(b"\n\n")
    assert api.stdin["warm-d_dialer_router_1"][-1] == b"<closed>"
    # the clients still start only after the adopted routers' settings, as after a cold start
    assert api.calls.index("settings warm-d_dialer_router_1") < api.calls.index("start p_dialer_1")
    assert project.containers["dialer_router"] == "warm-d_dialer_router_1"
    assert sorted(api.event_filters["container"]) == sorted(project.containers.values())


def test_an_adopted_router_dying_first_is_named_as_its_service() -> None:
    warm = {"dialer_router": "warm-d_dialer_router_1", "listener_router": "warm-l_listener_router_1"}
    api = AdoptingEngineAPI(warm, first_to_die="dialer_router")
    run = Project(FakeClient(api), plan_of(next_test(), "p"), adopted=warm).up(timeout=30)
    assert run.exit_code is None and run.failure == "dialer_router exited 1 before the dialer finished"


class FakeInspectAPI:
    def __init__(self, running: bool) -> None:
        self.running = running
        self.removed: list[str] = []

    def inspect_container(self, container):
        return {"State": {"Running": self.running}}

    def remove_container(self, container, **_):
        self.removed.append(container)


def _removed(api: FakeInspectAPI, expected: list[str]) -> bool:
    """Whether the background removal got to every one of `expected` (bounded wait)."""
    deadline = time.monotonic() + 5
    while sorted(api.removed) != sorted(expected) and time.monotonic() < deadline:
        time.sleep(0.01)
    return sorted(api.removed) == sorted(expected)


def test_take_gives_a_fitting_running_cell_once_and_removes_one_that_does_not_fit() -> None:
    released: list[bool] = []
    for running, image, given in ((True, None, True), (False, None, False),
                                  (True, "sha256:" + "d" * 64, False)):
        warm = WarmRouters()
        cell = cell_for(pooled())
        cell.release = lambda: released.append(True)
        warm._cell = cell
        api = FakeInspectAPI(running)
        taken = warm.take(FakeClient(api), image or cell.image)
        assert (taken is cell) is given
        assert warm.take(FakeClient(api), cell.image) is None  # once
        assert _removed(api, [] if given else list(cell.ids.values()))
    deadline = time.monotonic() + 5
    while len(released) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert released == [True, True]  # the misfits' leases, not the taken cell's


def test_a_test_that_cannot_use_the_cell_leaves_it_for_the_next() -> None:
    warm = WarmRouters()
    cell = cell_for(pooled())
    warm._cell = cell
    api = FakeInspectAPI(True)
    assert warm.take(FakeClient(api), cell.image, usable=False) is None  # a cgnat test
    assert warm.take(FakeClient(api), cell.image) is cell and api.removed == []


def test_a_cell_made_before_any_test_fits_the_first_test_of_its_router_image() -> None:
    host = SimpleNamespace(public_subnet="11.11.0.0/16")
    image = "sha256:" + "c" * 64
    plan = cell_plan(first_spec(host, image), NEXT_LANS, NEXT_POOL, OWNER_LABELS)
    cell = WarmCell(NEXT_LANS, NEXT_POOL, image, {s.name: s for s in plan.services},
                    {s.name: f"warm-{s.name}" for s in plan.services}, release=lambda: None,
                    made_at=time.monotonic())
    first = next_test(router_image=image, holders_for_ours=True, delay_ms=25, evidence=True,
                      transport="quic", test_name="go-v0.51 x js-v3.3 (quic)")
    assert set(adoption(plan_of(first), cell)) == {"dialer_router", "listener_router",
                                                   "dialer_netns", "listener_netns"}
