"""`submit` following a pass whose every test reported but whose callback never came: after the
grace it finishes the pass itself (if nobody else claimed it), instead of waiting for the
deadline. Fake chord results; no broker."""

from __future__ import annotations

import io
import time

import celery.exceptions
from rich.console import Console

from cluster.models import PeerRecord, Status, TestRecord, to_yaml_data
from cluster.tasks import PassSummary
from controller.run.progress import follow


class FakeChild:
    def __init__(self, name: str):
        self.id = name
        record = TestRecord(name=name, status=Status.PASS, rtt_ms=201.0,
                            dialer=PeerRecord(version="a"), listener=PeerRecord(version="a"))
        self.result = {"record": to_yaml_data(record), "log": "", "compose": ""}

    def ready(self) -> bool:
        return True

    def successful(self) -> bool:
        return True


class NeverReady:
    """A fake aggregate result that never arrives (its callback was lost)."""

    def ready(self) -> bool:
        return False

    def get(self, timeout: float, **kwargs):
        time.sleep(min(timeout, 0.01))
        raise celery.exceptions.TimeoutError()


class FakeGroup:
    results = [FakeChild("a x a (tcp)"), FakeChild("a x b (tcp)")]


SUMMARY = PassSummary(name="p", exit_code=0, partial=False, passed=2, failed=0, flaky=0,
                      known_failures=0, total=2, missing=0, test_pass_zip="z.zip")


def test_submit_finishes_a_pass_whose_callback_never_came() -> None:
    calls: list[float] = []

    def recover():
        calls.append(time.monotonic())
        return SUMMARY
    started = time.monotonic()
    summary, why = follow(NeverReady(), FakeGroup(), 2, started + 60,
                          Console(file=io.StringIO()), recover=recover, grace=1.0)
    assert summary is SUMMARY and why == ""
    assert len(calls) == 1 and 1.0 <= calls[0] - started < 5


def test_when_the_reporter_claimed_it_submit_waits_for_the_callbacks_result() -> None:
    calls: list[int] = []
    started = time.monotonic()
    summary, why = follow(NeverReady(), FakeGroup(), 2, started + 3,
                          Console(file=io.StringIO()), recover=lambda: calls.append(1), grace=0.5)
    assert summary is None and "deadline" in why and calls == [1]


def test_without_every_result_nothing_is_recovered() -> None:
    class Half(FakeGroup):
        results = [FakeChild("a x a (tcp)")]
    calls: list[int] = []
    summary, why = follow(NeverReady(), Half(), 2, time.monotonic() + 2,
                          Console(file=io.StringIO()), recover=lambda: calls.append(1), grace=0.1)
    assert summary is None and calls == []
