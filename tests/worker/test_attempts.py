"""worker.attempts: after each attempt of a test, run it again or say which record it ends with.

One test per branch: infrastructure retry, infrastructure exhausted (error), a refused image
(error at once), test re-run, flaky, re-runs exhausted, a known failure (never re-run), a pass.
"""

from __future__ import annotations

import pytest

from cluster.models import ImageInfo, PeerRecord, Status, TestCase, TestRecord, Transport
from cluster.tasks import RunRequest
from worker.attempts import MAX_INFRA_RETRIES, Again, Fault, decide

IMAGE = ImageInfo(image_id="c" * 64, image_name="x", built_at="2026-11-25T09:00:00Z", arch="x86_64")


def request(retries: int = 0, expected_failure: bool = False) -> RunRequest:
    test = TestCase(name="a x b (tcp)", dialer="a", listener="b", transport=Transport.TCP,
                    expected_failure=expected_failure)
    return RunRequest(pass_id="p", test=test, dialer=IMAGE, listener=IMAGE, router=IMAGE,
                      relay=IMAGE, base=IMAGE, retries=retries)


def record(status: Status, host: str = "h1", reason: str | None = None) -> TestRecord:
    return TestRecord(name="a x b (tcp)", status=status, dialer=PeerRecord(version="a"),
                      listener=PeerRecord(version="b"), host=host,
                      rtt_ms=201.0 if status is Status.PASS else None,
                      reason=reason or (None if status is Status.PASS else "timeout"))


def test_an_infrastructure_fault_is_retried_with_backoff() -> None:
    step = decide(request(), "h1", 1, (), Fault("image fetch failed"))
    assert step == Again("infrastructure", 2, (), MAX_INFRA_RETRIES)


def test_an_infrastructure_fault_after_its_retries_is_an_error_even_for_a_known_failure() -> None:
    step = decide(request(expected_failure=True), "h2", MAX_INFRA_RETRIES, (),
                  Fault("Docker engine not reachable"))
    assert isinstance(step, TestRecord)
    assert step.status is Status.ERROR and step.expected_failure and not step.ok
    assert step.reason == "infrastructure: Docker engine not reachable"
    assert (step.name, step.host, step.log_file) == ("a x b (tcp)", "h2", "logs/a_x_b_tcp.log")
    assert step.dialer.image_id == "c" * 64


def test_an_image_that_loads_as_another_is_an_error_at_once() -> None:
    step = decide(request(), "h1", 0, (), Fault("loaded as 1234, not as cccc", retryable=False))
    assert isinstance(step, TestRecord) and step.status is Status.ERROR


def test_a_failed_test_is_run_again_while_retries_allow() -> None:
    step = decide(request(retries=2), "h1", 0, (), record(Status.FAIL, "h1", "dialer exited 1"))
    assert step == Again("re-run", 1, ("h1: dialer exited 1",), 1)
    # a re-run spends a Celery retry too: the infrastructure budget grows by one
    after = decide(request(retries=2), "h2", 1, step.failures, Fault("engine hiccup"))
    assert after == Again("infrastructure", 2, step.failures, MAX_INFRA_RETRIES + 1)


def test_a_pass_after_a_failure_is_flaky() -> None:
    step = decide(request(retries=1), "h2", 1, ("h1: timeout",), record(Status.PASS, "h2"))
    assert isinstance(step, TestRecord)
    assert (step.status, step.attempts, step.reason) == (Status.FLAKY, 2,
                                                         "passed after failing: h1: timeout")
    assert step.rtt_ms == 201.0 and step.ok


def test_a_test_that_keeps_failing_is_a_fail_naming_its_attempts() -> None:
    step = decide(request(retries=1), "h2", 1, ("h1: timeout",),
                  record(Status.FAIL, "h2", "dialer exited 1"))
    assert isinstance(step, TestRecord)
    assert (step.status, step.attempts) == (Status.FAIL, 2)
    assert step.reason == "dialer exited 1 (earlier attempts: h1: timeout)"


def test_an_error_after_a_re_run_names_the_earlier_attempt() -> None:
    step = decide(request(retries=1), "h2", MAX_INFRA_RETRIES + 1, ("h1: timeout",),
                  Fault("image fetch failed"))
    assert isinstance(step, TestRecord) and step.status is Status.ERROR and step.attempts == 2
    assert step.reason == "infrastructure: image fetch failed (earlier attempts: h1: timeout)"


def test_a_known_failure_is_never_re_run() -> None:
    failed = record(Status.FAIL)
    assert decide(request(retries=3, expected_failure=True), "h1", 0, (), failed) is failed


@pytest.mark.parametrize("status", [Status.PASS, Status.FAIL])
def test_a_first_attempt_without_retries_is_its_own_record(status: Status) -> None:
    first = record(status)
    assert decide(request(), "h1", 0, (), first) is first


def test_a_reason_is_clipped_and_shown_without_control_characters() -> None:
    step = decide(request(), "h1", MAX_INFRA_RETRIES, (), Fault("boom\x00\x1b[31m" + "x" * 20000))
    assert isinstance(step, TestRecord)
    assert "\\x00\\x1b[31m" in step.reason and len(step.reason) <= 8192
    TestRecord.model_validate(step.model_dump())  # what the reporter will check
