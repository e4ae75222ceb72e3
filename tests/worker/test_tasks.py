"""The run_test task with a fake host: an infrastructure fault that outlives its retries ends
as an `error` record, and a pass holding one exits 3, even when the test is a known failure."""

from __future__ import annotations

import pytest

import worker.tasks as tasks
from cluster.errors import EXIT_INFRASTRUCTURE, InfrastructureError
from cluster.matrix import build_matrix
from cluster.models import ImageInfo, ResultsMetadata, TestCase, Transport
from cluster.selection import Selection
from cluster.tasks import RunRequest
from controller.results.collect import collect, exit_code_of

IMAGE = ImageInfo(image_id="c" * 64, image_name="x", built_at="2026-11-25T09:00:00Z", arch="x86_64")


class FakeHost:
    """Stands in for worker.host.Host: the task asks only its name and image source."""

    name = "fake-host"
    image_source = None
    warm_routers = False


@pytest.fixture
def broken_engine(monkeypatch) -> list[str]:
    """Every image fetch fails, as with the cache server gone."""
    calls: list[str] = []

    def fetch_fails(image_id: str, source: str | None) -> bool:
        calls.append(image_id)
        raise InfrastructureError("image fetch failed (a fake fault)")
    monkeypatch.setattr(tasks, "this_host", lambda: FakeHost())
    monkeypatch.setattr(tasks, "ensure_image", fetch_fails)
    return calls


def test_a_known_failure_whose_images_never_arrive_is_an_error_and_the_pass_exits_3(
        broken_engine) -> None:
    test = TestCase(name="a x b (tcp)", dialer="a", listener="b", transport=Transport.TCP,
                    expected_failure=True)
    request = RunRequest(pass_id="p", test=test, dialer=IMAGE, listener=IMAGE, router=IMAGE,
                         relay=IMAGE, base=IMAGE)
    run = tasks.run_test.apply(args=(test.name, request.model_dump(mode="json", by_alias=True)))
    assert run.successful(), run.result
    payload = run.result
    assert payload["record"]["status"] == "error", payload
    assert payload["record"]["reason"] == "infrastructure: image fetch failed (a fake fault)"
    assert len(broken_engine) == 4  # the first attempt and three retries

    matrix = build_matrix([test], Selection(known_failures=["a x b"]), "full")
    assert matrix.tests[0].expected_failure
    collected = collect(ResultsMetadata(test_pass="p"), matrix, [payload])
    summary = collected.results.summary
    assert (summary.known_failures, summary.failed, summary.passed) == (0, 0, 0)
    assert exit_code_of(collected.results) == EXIT_INFRASTRUCTURE


def test_a_result_the_reporter_would_refuse_is_an_error_not_a_lost_test(monkeypatch) -> None:
    from cluster.models import PeerRecord, Status, TestRecord
    from cluster.tasks import COMPOSE_LIMIT
    from worker.runner import RunOutput

    test = TestCase(name="a x b (tcp)", dialer="a", listener="b", transport=Transport.TCP)
    request = RunRequest(pass_id="p", test=test, dialer=IMAGE, listener=IMAGE, router=IMAGE,
                         relay=IMAGE, base=IMAGE)
    passed = TestRecord(name=test.name, status=Status.PASS, rtt_ms=201.0,
                        dialer=PeerRecord(version="a"), listener=PeerRecord(version="b"))
    monkeypatch.setattr(tasks, "this_host", lambda: FakeHost())
    monkeypatch.setattr(tasks, "ensure_image", lambda image_id, source: False)
    monkeypatch.setattr(tasks, "run_one", lambda request, host, *_, **__: RunOutput(
        passed, "log", "x" * (COMPOSE_LIMIT + 1)))
    run = tasks.run_test.apply(args=(test.name, request.model_dump(mode="json", by_alias=True)))
    record = run.result["record"]
    assert (record["status"], record["name"]) == ("error", "a x b (tcp)")
    assert record["reason"].startswith("infrastructure: its result failed validation")


class FakeRedis:
    """Stands in for the result backend's Redis client: SET (NX) and GET on a dict."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def set(self, key: str, value: str, nx: bool = False, ex: int | None = None) -> bool:
        if nx and key in self.data:
            return False
        self.data[key] = value
        return True

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def exists(self, key: str) -> int:
        return int(key in self.data)


class FakeBackend:
    def __init__(self) -> None:
        self.client = FakeRedis()
        self.states: dict[str, str] = {}

    def get_task_meta(self, task_id: str) -> dict:
        return {"status": self.states.get(task_id, "PENDING")}


class FakeTask:
    """What first_result asks of the bound task: its request and its backend."""

    def __init__(self, backend: FakeBackend, task_id: str, host: str, tag: str = "tag-1") -> None:
        from types import SimpleNamespace
        self.backend = backend
        self.request = SimpleNamespace(is_eager=False, id=task_id, hostname=host,
                                       properties={"delivery_tag": tag})


def test_two_results_of_one_test_the_first_wins_the_second_is_dropped() -> None:
    from celery.exceptions import Ignore
    backend = FakeBackend()
    message = {"record": {"name": "a x b (tcp)"}}
    assert tasks.first_result(FakeTask(backend, "t1", "holepunch@worker-a", "tag-2"), message) is message
    backend.states["t1"] = "SUCCESS"
    with pytest.raises(Ignore):
        tasks.first_result(FakeTask(backend, "t1", "holepunch@worker-b", "tag-1"), message)
    # Another test is unaffected.
    assert tasks.first_result(FakeTask(backend, "t2", "holepunch@worker-b"), message) is message


def test_a_claim_whose_winner_never_stored_its_result_is_taken_over(monkeypatch) -> None:
    import json
    backend = FakeBackend()
    backend.client.data["holepunch:first-result:t1"] = json.dumps({"host": "b", "at": 0})
    message = {"record": {"name": "a x b (tcp)"}}
    assert tasks.first_result(FakeTask(backend, "t1", "holepunch@worker-a"), message) is message
    assert json.loads(backend.client.data["holepunch:first-result:t1"])["host"] == "holepunch@worker-a"


def test_the_run_on_a_host_taken_for_lost_never_counts_even_when_it_finishes_first() -> None:
    """worker-b was paused; the reporter re-queued its test (marking the old delivery lost); it
    comes back and finishes before the re-run: dropped, and the re-run's result is the record,
    even on worker-b itself, restarted."""
    from celery.exceptions import Ignore

    from cluster.failover import LOST_KEY
    backend = FakeBackend()
    backend.client.data[LOST_KEY.format("tag-1")] = "holepunch@worker-b"
    message = {"record": {"name": "a x b (tcp)"}}
    healed = FakeTask(backend, "t1", "holepunch@worker-b", "tag-1")
    assert tasks.lost_here(healed)
    with pytest.raises(Ignore):
        tasks.first_result(healed, message)
    rerun = FakeTask(backend, "t1", "holepunch@worker-b", "tag-2")
    assert not tasks.lost_here(rerun)
    assert tasks.first_result(rerun, message) is message
