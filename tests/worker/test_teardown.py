"""A test's teardown in the background: one pending per process, joined before the next, and
never for a test cut short; its lease is released only once its project is gone."""

from __future__ import annotations

import logging
import sys
import threading
from types import SimpleNamespace

import pytest

from worker import runner
from worker.project import ProjectRun
from worker.runner import DialerReport, execute
from worker.teardown import Starting, Teardowns

WAIT_S = 5.0  # a bound for a thread that should be done at once, never a pace
STARTING_NOW = lambda: None  # noqa: E731 - set by the tests that look at the start marks


def blocking_work(seen: list[str], name: str) -> tuple[threading.Event, threading.Event]:
    began, go = threading.Event(), threading.Event()

    def work() -> None:
        began.set()
        assert go.wait(WAIT_S)
        seen.append(name)
    return began, go, work  # type: ignore[return-value]


def test_hand_over_returns_while_the_work_runs_and_join_waits_for_it() -> None:
    teardowns, seen = Teardowns(), []
    began, go, work = blocking_work(seen, "first")
    assert teardowns.hand_over("first", work) < WAIT_S
    assert began.wait(WAIT_S) and teardowns.pending and seen == []
    go.set()
    teardowns.join()
    assert seen == ["first"] and not teardowns.pending


def test_the_next_hand_over_waits_for_the_pending_one() -> None:
    teardowns, seen = Teardowns(), []
    began, go, first = blocking_work(seen, "first")
    teardowns.hand_over("first", first)
    assert began.wait(WAIT_S)
    second_began = threading.Event()
    handing = threading.Thread(target=teardowns.hand_over,
                               args=("second", lambda: (second_began.set(), seen.append("second"))))
    handing.start()
    assert not second_began.wait(0.2)  # bounded to one: the second has not begun
    go.set()
    handing.join(WAIT_S)
    teardowns.join()
    assert seen == ["first", "second"]


def test_a_failing_teardown_is_logged_and_the_next_still_runs(caplog) -> None:
    teardowns, seen = Teardowns(), []

    def broken() -> None:
        raise RuntimeError("engine gone")
    with caplog.at_level(logging.INFO, logger="worker.teardown"):
        teardowns.hand_over("a x b (tcp)", broken)
        teardowns.hand_over("c x d (tcp)", lambda: seen.append("next"))
        teardowns.join()
    assert seen == ["next"]
    assert "a x b (tcp): teardown failed" in caplog.text and "engine gone" in caplog.text
    assert "background teardown c x d (tcp):" in caplog.text


# --------------------------------------------------------------------------- runner.execute


class FakeProject:
    """Project as execute uses it: `up` ends as told."""

    ending: BaseException | None = None

    def __init__(self, client, plan, adopted=None) -> None:
        self.containers: dict[str, str] = {}

    def up(self, timeout, prepare, phases, running=lambda: None) -> ProjectRun:
        if FakeProject.ending is not None:
            raise FakeProject.ending
        FakeProject.starting_seen = STARTING_NOW()
        running()
        FakeProject.running_seen = STARTING_NOW()
        return ProjectRun(exit_code=0, log="dialer | done\n")


@pytest.fixture
def fake_run(monkeypatch):
    """execute() with its engine calls faked; the teardown records itself, blocking until `go`."""
    seen: list[str] = []
    go = threading.Event()

    def tear_down(spec, host, execution, adopted=None) -> None:
        assert go.wait(WAIT_S)
        here = threading.current_thread() is threading.main_thread()
        seen.append("torn down" if here else "torn down in the background")
    monkeypatch.setattr(runner, "compose_for", lambda spec: {"services": {}})
    monkeypatch.setattr(runner, "plan_project", lambda name, document: None)
    monkeypatch.setattr(runner, "Project", FakeProject)
    monkeypatch.setattr(runner, "read_dialer", lambda client, project, started: DialerReport(
        stdout='{"rtt_to_holepunched_peer_millis": 201}\n', run_s=3.0))
    monkeypatch.setattr(runner, "_tear_down", tear_down)
    FakeProject.ending = None
    spec = SimpleNamespace(project="p-1", test_key="p-1", transport="tcp", evidence=False,
                           test_name="a x b (tcp)")
    host = SimpleNamespace(cache=SimpleNamespace(store=lambda *_: ("d" * 64, None)),
                           services=SimpleNamespace(client=None))
    return spec, host, seen, go


def test_a_finished_test_returns_before_its_teardown_and_frees_its_lease_after(fake_run) -> None:
    spec, host, seen, go = fake_run
    teardowns = Teardowns()
    execution = execute(spec, lambda: None, host, 60, teardowns=teardowns,
                        then=lambda: seen.append("lease released"))
    assert execution.exit_code == 0 and execution.log == "dialer | done\n"
    assert seen == [] and teardowns.pending  # the record is made; the removal still runs
    go.set()
    teardowns.join()
    assert seen == ["torn down in the background", "lease released"]


def test_a_test_cut_short_is_torn_down_before_the_exception_goes_on(fake_run) -> None:
    spec, host, seen, go = fake_run
    teardowns = Teardowns()
    go.set()
    FakeProject.ending = SystemExit(1)  # a SIGTERM during the test, as billiard raises it
    with pytest.raises(SystemExit):
        execute(spec, lambda: None, host, 60, teardowns=teardowns,
                then=lambda: seen.append("lease released"))
    assert seen == ["torn down", "lease released"] and not teardowns.pending


def test_without_teardowns_the_teardown_is_done_on_return(fake_run) -> None:
    spec, host, seen, go = fake_run
    go.set()
    execute(spec, lambda: None, host, 60, then=lambda: seen.append("lease released"))
    assert seen == ["torn down", "lease released"]


# --------------------------------------------------------------------------- starting tests


def test_a_teardown_waits_while_a_test_on_the_host_starts_and_goes_once_it_runs(tmp_path) -> None:
    starting = Starting(tmp_path / "starting")
    teardowns, seen = Teardowns(starting, defer_s=WAIT_S), []
    started = starting.begin()  # another test (of any process here) is starting its containers
    teardowns.hand_over("first", lambda: seen.append("torn down"))
    teardowns._pending.join(0.3)
    assert teardowns.pending and seen == []  # held back while the test starts
    started()
    teardowns._pending.join(WAIT_S)
    assert seen == ["torn down"] and not teardowns.pending


def test_a_teardown_waits_at_most_its_bound(tmp_path) -> None:
    starting = Starting(tmp_path / "starting")
    teardowns, seen = Teardowns(starting, defer_s=0.2), []
    starting.begin()  # never ends
    teardowns.hand_over("first", lambda: seen.append("torn down"))
    teardowns._pending.join(WAIT_S)
    assert seen == ["torn down"]


def test_the_next_hand_over_and_the_process_exit_end_the_wait_at_once(tmp_path) -> None:
    starting = Starting(tmp_path / "starting")
    teardowns, seen = Teardowns(starting, defer_s=20), []
    starting.begin()
    teardowns.hand_over("first", lambda: seen.append("first"))
    assert teardowns.hand_over("second", lambda: seen.append("second")) < WAIT_S
    assert teardowns.join() < WAIT_S
    assert seen == ["first", "second"]


def test_a_dead_processs_mark_holds_nothing(tmp_path) -> None:
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    starting = Starting(tmp_path / "starting")
    (starting.directory / f"{proc.pid}-1").touch()
    assert starting.quiet() and list(starting.directory.iterdir()) == []


def test_execute_marks_its_test_starting_until_its_clients_run(fake_run, tmp_path,
                                                               monkeypatch) -> None:
    spec, host, seen, go = fake_run
    starting = Starting(tmp_path / "starting")
    monkeypatch.setattr(sys.modules[__name__], "STARTING_NOW", lambda: not starting.quiet())
    go.set()
    teardowns = Teardowns(starting)
    execute(spec, lambda: None, host, 60, teardowns=teardowns)
    teardowns.join()
    assert (FakeProject.starting_seen, FakeProject.running_seen) == (True, False)
    assert starting.quiet()
