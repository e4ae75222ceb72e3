"""After one attempt of a test: run it again, or which record it ends with. A pure decision;
the `run_test` task only carries it out (Celery's retry, or the returned record).

Two budgets, as Celery counts them (`retries` = the task's retries so far, of either kind):
- an infrastructure fault (image fetch, engine, anything unexpected) is retried up to
  MAX_INFRA_RETRIES times, then the test is an `error`: never a verdict on it;
- a failed test is re-run (on any host) up to the request's `retries`; one that then passes is
  `flaky`, one that keeps failing says what its earlier attempts were.

A third bound, before either: a test whose task process died during MAX_DELIVERIES deliveries
of one attempt (out of memory, a crash: it never returned) is not run again but recorded as an
`error` (`poisoned`), so one such test cannot hold a pass until its deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.models import PeerRecord, Status, TestRecord, as_reason, log_file_name
from cluster.tasks import RunRequest

MAX_INFRA_RETRIES = 3
MAX_DELIVERIES = 3


@dataclass(frozen=True)
class Fault:
    """The attempt could not run the test: why, and whether trying again can help (an image
    that loads as another ID is refused at once, never retried blindly)."""

    reason: str
    retryable: bool = True


@dataclass(frozen=True)
class Again:
    """Run the task again after `countdown` seconds, with Celery's bound `max_retries`."""

    kind: str                     # "infrastructure" or "re-run": for the log
    countdown: float
    failures: tuple[str, ...]     # the test's failed attempts so far, carried to the next one
    max_retries: int


def error_record(request: RunRequest, host: str, reason: str,
                 failures: tuple[str, ...] = ()) -> TestRecord:
    """When the host could not run the test at all: an error record, never a lost test."""
    test = request.test
    if failures:
        reason = f"{reason} (earlier attempts: {'; '.join(failures)})"
    return TestRecord.error(test, f"infrastructure: {reason}", host=host,
                            dialer=PeerRecord.of(test.dialer, request.dialer),
                            listener=PeerRecord.of(test.listener, request.listener),
                            log_file=log_file_name(test.name), attempts=len(failures) + 1)


def decide(request: RunRequest, host: str, retries: int, failures: tuple[str, ...],
           outcome: TestRecord | Fault) -> Again | TestRecord:
    """What follows an attempt that ended in `outcome` (its record, or a fault)."""
    if isinstance(outcome, Fault):
        budget = MAX_INFRA_RETRIES + len(failures)  # re-runs spend Celery retries too
        if outcome.retryable and retries < budget:
            return Again("infrastructure", 2 ** min(retries, 5), failures, budget)
        return error_record(request, host, outcome.reason, failures)
    record = outcome
    if record.status is Status.FAIL and len(failures) < request.retries \
            and not request.test.expected_failure:
        return Again("re-run", 1, (*failures, as_reason(f"{record.host}: {record.reason}")),
                     retries + 1)
    if not failures:
        return record
    note = "; ".join(failures)
    if record.status is Status.PASS:
        update = {"status": Status.FLAKY, "reason": as_reason(f"passed after failing: {note}")}
    else:
        update = {"reason": as_reason(f"{record.reason} (earlier attempts: {note})")}
    return record.model_copy(update={**update, "attempts": len(failures) + 1})


def poisoned(request: RunRequest, host: str, deliveries: int | None,
             failures: tuple[str, ...] = ()) -> TestRecord | None:
    """The error record of a test delivered more than MAX_DELIVERIES times: every earlier
    delivery's process died before it returned. None: run it."""
    if deliveries is None or deliveries <= MAX_DELIVERIES:
        return None
    return error_record(request, host, f"the worker process running it died during "
                                       f"{deliveries - 1} deliveries (out of memory, a crash, "
                                       f"killed); not run again", failures)
