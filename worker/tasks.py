"""The `run_test` Celery task: glue between a RunRequest, worker.runner and worker.attempts."""

from __future__ import annotations

import logging
from functools import lru_cache

from pydantic import ValidationError

from cluster.app import app
from cluster.errors import InfrastructureError
from cluster.models import TestRecord
from cluster.evidence import CaptureMode
from cluster.tasks import LOG_LIMIT, RUN_TEST, RunRequest, RunResult
from worker.captures import as_message, evidence_on_pass, keeps_captures
from worker.attempts import MAX_INFRA_RETRIES, Again, Fault, decide, error_record
from worker.host import Host
from worker.images import ImageMismatchError, ensure_image
from worker.phases import Phases
from worker.runner import RunOutput, run_test as run_one

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def this_host() -> Host:
    return Host.from_environment()


def attempt(request: RunRequest, host: Host, test_name: str,
            evidence_on_pass: bool = True) -> RunOutput | Fault:
    """Run the test once here; an infrastructure fault is returned, not raised."""
    source = request.image_source or host.image_source
    phases = Phases()
    try:
        with phases("images"):
            for image in (request.base, request.router, request.relay, request.dialer,
                          request.listener):
                ensure_image(image.image_id, source)
        output = run_one(request, host, evidence_on_pass, phases)
        log.info("%s", phases.line(test_name))
        return output
    except ImageMismatchError as exc:
        log.error("%s: %s", test_name, exc)
        return Fault(str(exc), retryable=False)
    except Exception as exc:  # noqa: BLE001 - InfrastructureError and anything unexpected
        # Anything unexpected (a Redis reply garbled by a dying container, an engine hiccup) is
        # handled like an infrastructure fault: bounded retries, then an error record. Raising
        # would leave the test without a record and fail the whole chord.
        if not isinstance(exc, InfrastructureError):
            log.exception("%s: unexpected %s", test_name, exc.__class__.__name__)
            return Fault(f"{exc.__class__.__name__}: {exc}")
        return Fault(str(exc))


def with_evidence(record: TestRecord, evidence: dict[str, bytes],
                  mode: CaptureMode) -> tuple[TestRecord, dict[str, str]]:
    """The final record naming the captures it keeps, and those files for the message.

    A flaky test keeps the evidence of its last (passing) attempt: the failed attempts ran as
    other tasks, maybe on other hosts."""
    if not evidence or not keeps_captures(record, mode):
        return record, {}
    return record.model_copy(update={"captures": sorted(evidence)}), as_message(evidence)


@app.task(name=RUN_TEST, bind=True, acks_late=True, reject_on_worker_lost=True,
          max_retries=MAX_INFRA_RETRIES)
def run_test(self, test_name: str, request_data: dict, failures: list[str] | None = None) -> dict:
    """Run one test here and return its RunResult. `test_name` is for Flower's eyes.

    A failed test is re-queued (any host may take it) while `retries` allow; one that fails and
    then passes is recorded as flaky, never as a plain pass (worker.attempts decides).
    """
    request = RunRequest.model_validate(request_data)
    host = this_host()
    output = attempt(request, host, test_name,
                     evidence_on_pass=evidence_on_pass(request.capture,
                                                       request.test.expected_failure,
                                                       bool(failures)))
    outcome = output if isinstance(output, Fault) else output.record
    step = decide(request, host.name, self.request.retries, tuple(failures or ()), outcome)
    if isinstance(step, Again):
        if isinstance(output, Fault):
            log.warning("%s: %s (retry %d of %d)", test_name, output.reason,
                        self.request.retries + 1, MAX_INFRA_RETRIES)
        else:
            log.info("%s failed (%s); re-running it (%d of %d)", test_name, output.record.reason,
                     len(step.failures), request.retries)
        raise self.retry(args=(test_name, request_data), kwargs={"failures": list(step.failures)},
                         countdown=step.countdown, max_retries=step.max_retries,
                         exc=InfrastructureError(output.reason) if isinstance(output, Fault) else None)
    if isinstance(output, Fault):
        return RunResult(record=step, log=output.reason[-LOG_LIMIT:]).to_message()
    record, captures = with_evidence(step, output.evidence, request.capture)
    try:
        return RunResult(record=record, log=output.log, compose=output.compose,
                         captures=captures).to_message()
    except ValidationError as exc:  # never a lost test: the reporter would only refuse it
        reason = f"its result failed validation: {exc.errors()[0]['msg']}"
        return RunResult(record=error_record(request, host.name, reason)).to_message()
