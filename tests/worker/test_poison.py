"""A test whose task process dies on every delivery is given up on after MAX_DELIVERIES: an
`error` record, without running it again (the count comes from the broker; a fake one here)."""

from __future__ import annotations

import pytest

import worker.tasks as tasks
from cluster.models import ImageInfo, TestCase, Transport
from cluster.tasks import RunRequest
from worker.attempts import MAX_DELIVERIES, poisoned

IMAGE = ImageInfo(image_id="c" * 64, image_name="x", built_at="2026-11-25T09:00:00Z", arch="x86_64")
TEST = TestCase(name="a x b (tcp)", dialer="a", listener="b", transport=Transport.TCP)
REQUEST = RunRequest(pass_id="p", test=TEST, dialer=IMAGE, listener=IMAGE, router=IMAGE,
                     relay=IMAGE, base=IMAGE)


def test_up_to_the_bound_it_runs_then_it_is_an_error() -> None:
    assert MAX_DELIVERIES == 3
    for deliveries in (None, 1, 2, 3):
        assert poisoned(REQUEST, "h", deliveries) is None
    record = poisoned(REQUEST, "h", 4)
    assert record is not None and record.status.value == "error"
    assert "died during 3 deliveries" in record.reason and record.host == "h"


class FakeHost:
    name = "fake-host"
    image_source = None
    warm_routers = False


@pytest.mark.parametrize("deliveries, runs", [(3, 1), (4, 0)])
def test_the_task_does_not_run_a_poisoned_test(monkeypatch, deliveries: int, runs: int) -> None:
    ran: list[str] = []
    monkeypatch.setattr(tasks, "this_host", lambda: FakeHost())
    monkeypatch.setattr(tasks, "count_delivery", lambda task: deliveries)
    monkeypatch.setattr(tasks, "attempt", lambda request, host, name, evidence_on_pass=True: ran.append(name)
                        or tasks.Fault("a fake fault", retryable=False))
    result = tasks.run_test.apply(args=(TEST.name, REQUEST.model_dump(mode="json", by_alias=True)))
    assert result.successful(), result.result
    assert len(ran) == runs
    assert result.result["record"]["status"] == "error"
    assert ("died during" in result.result["record"]["reason"]) == (runs == 0)


class FakePipeline:
    def __init__(self, store: dict):
        self.store, self.calls = store, []

    def incr(self, key):
        self.calls.append(("incr", key))

    def expire(self, key, ttl):
        self.calls.append(("expire", key))

    def execute(self):
        key = self.calls[0][1]
        self.store[key] = self.store.get(key, 0) + 1
        return [self.store[key], True]


def test_deliveries_are_counted_per_task_id_and_retry() -> None:
    store: dict = {}

    class Request:
        id, retries, is_eager = "t1", 0, False

    class Task:
        request = Request()
        backend = type("B", (), {"client": type("C", (), {"pipeline": lambda self: FakePipeline(store)})()})()

    assert [tasks.count_delivery(Task()) for _ in range(3)] == [1, 2, 3]
    Request.retries = 1
    assert tasks.count_delivery(Task()) == 1
    assert set(store) == {"holepunch:deliveries:t1:0", "holepunch:deliveries:t1:1"}
