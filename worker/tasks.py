"""The `run_test` Celery task: glue between a RunRequest, worker.runner and worker.attempts."""

from __future__ import annotations

import json
import logging
import time
from functools import lru_cache
from typing import NoReturn

from celery import states
from celery.exceptions import Ignore
from pydantic import ValidationError

from cluster.app import app
from cluster.errors import InfrastructureError
from cluster.evidence import CaptureMode
from cluster.failover import FIRST_RESULT_KEY, LOST_KEY, keep_result
from cluster.models import Status, TestRecord
from cluster.tasks import DELIVERIES_KEY, DELIVERIES_TTL, LOG_LIMIT, RUN_TEST, RunRequest, RunResult
from worker.attempts import MAX_INFRA_RETRIES, Again, Fault, decide, error_record, poisoned
from worker.captures import as_message, evidence_on_pass, from_message, keeps_captures, of_attempt
from worker.host import Host
from worker.images import ImageMismatchError, ensure_image
from worker.phases import Phases
from worker.runner import RunOutput
from worker.runner import run_test as run_one
from worker.teardown import PROCESS
from worker.warmrouters import PROCESS as WARM_ROUTERS

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
        output = run_one(request, host, evidence_on_pass, phases, teardowns=PROCESS,
                         warm=WARM_ROUTERS if host.warm_routers else None)
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


def with_evidence(record: TestRecord, evidence: dict[str, bytes], mode: CaptureMode,
                  failed_attempt: dict[str, bytes] | None = None) -> tuple[TestRecord, dict[str, str]]:
    """The final record naming the captures it keeps, and those files for the message.

    A flaky test keeps its last failed attempt's evidence (`failed_attempt`, handed on by the
    re-runs under that attempt's names: it ran as another task, maybe on another host) beside
    its passing attempt's: why it failed is the question. A test that kept failing keeps its
    last attempt's only."""
    kept = {**(failed_attempt or {}), **evidence} if record.status is Status.FLAKY else evidence
    if not kept or not keeps_captures(record, mode):
        return record, {}
    return record.model_copy(update={"captures": sorted(kept)}), as_message(kept)


def handed_on(output: RunOutput | Fault, test_name: str, attempts: int,
              earlier: dict[str, bytes]) -> dict[str, bytes]:
    """The failed-attempt evidence a re-run carries: this attempt's when it failed with some
    (it is attempt number `attempts`), else what the earlier attempts handed on."""
    if isinstance(output, Fault) or not output.evidence:
        return earlier
    return of_attempt(output.evidence, test_name, attempts)


def count_delivery(task) -> int | None:
    """This delivery's number for the task's current attempt, counted in the result backend
    (the broker's Redis); None when it cannot be counted (run eagerly, a backend error)."""
    if task.request.is_eager or not task.request.id:
        return None
    key = DELIVERIES_KEY.format(task_id=task.request.id, retries=task.request.retries)
    try:
        pipe = task.backend.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, DELIVERIES_TTL)
        count, _ = pipe.execute()
        return int(count)
    except Exception as exc:  # noqa: BLE001 - counting is a guard, never a reason to fail
        log.warning("cannot count deliveries of %s: %s", task.request.id, exc)
        return None


@app.task(name=RUN_TEST, bind=True, acks_late=True, reject_on_worker_lost=True,
          max_retries=MAX_INFRA_RETRIES)
def run_test(self, test_name: str, request_data: dict, failures: list[str] | None = None,
             evidence: dict[str, str] | None = None) -> dict:
    """Run one test here and return its RunResult. `test_name` is for Flower's eyes.

    A failed test is re-queued (any host may take it) while `retries` allow; one that fails and
    then passes is recorded as flaky, never as a plain pass (worker.attempts decides). A re-run
    is handed the last failed attempt's `evidence` (base64 by capture name, at most 4 MiB of
    files), for a flaky record to keep.
    """
    request = RunRequest.model_validate(request_data)
    host = this_host()
    deliveries = count_delivery(self)
    given_up = poisoned(request, host.name, deliveries, tuple(failures or ()))
    if given_up is not None:
        log.error("%s: %s", test_name, given_up.reason)
        return first_result(self, RunResult(record=given_up).to_message())
    output = attempt(request, host, test_name,
                     evidence_on_pass=evidence_on_pass(request.capture,
                                                       request.test.expected_failure,
                                                       bool(failures)))
    if lost_here(self):  # the reporter took this host for lost and re-queued the test meanwhile
        _drop(self, test_name)
    outcome = output if isinstance(output, Fault) else output.record
    step = decide(request, host.name, self.request.retries, tuple(failures or ()), outcome)
    failed_attempt = from_message(evidence or {})
    if isinstance(step, Again):
        carried = handed_on(output, request.test.name, len(step.failures), failed_attempt)
        if isinstance(output, Fault):
            log.warning("%s: %s (retry %d of %d)", test_name, output.reason,
                        self.request.retries + 1, MAX_INFRA_RETRIES)
        else:
            log.info("%s failed (%s); re-running it (%d of %d)", test_name, output.record.reason,
                     len(step.failures), request.retries)
        raise self.retry(args=(test_name, request_data),
                         kwargs={"failures": list(step.failures), "evidence": as_message(carried)},
                         kwargsrepr=repr({"failures": list(step.failures),
                                          "evidence": sorted(carried)}),  # not 4 MiB of base64
                         countdown=step.countdown, max_retries=step.max_retries,
                         exc=InfrastructureError(output.reason) if isinstance(output, Fault) else None)
    if isinstance(output, Fault):
        return first_result(self, RunResult(record=step,
                                            log=output.reason[-LOG_LIMIT:]).to_message())
    record, captures = with_evidence(step, output.evidence, request.capture, failed_attempt)
    try:
        message = RunResult(record=record, log=output.log, compose=output.compose,
                            captures=captures).to_message()
    except ValidationError as exc:  # never a lost test: the reporter would only refuse it
        reason = f"its result failed validation: {exc.errors()[0]['msg']}"
        message = RunResult(record=error_record(request, host.name, reason)).to_message()
    return first_result(self, message)


def first_result(task, message: dict) -> dict:
    """`message` if this is the task's first result; else Ignore (no stored result, no second
    count towards the chord, the message acknowledged).

    Two runs of one task finish when a host the reporter took for lost (paused, cut off) comes
    back and completes the test that was meanwhile re-run elsewhere. The first to claim the
    task's record (SET NX on the result backend) keeps it; cluster.failover.keep_result decides
    for the other.
    """
    if task.request.is_eager:  # apply() in this process: no broker, no second run
        return message
    if lost_here(task) or not claim_first(task.backend, task.request.id, task.request.hostname):
        _drop(task, message.get("record", {}).get("name", task.request.id))
    return message


def lost_here(task) -> bool:
    """The reporter took this delivery of the task from its host (lost) and re-queued it."""
    if task.request.is_eager:
        return False
    tag = (getattr(task.request, "properties", None) or {}).get("delivery_tag")
    return bool(tag) and bool(task.backend.client.exists(LOST_KEY.format(tag)))


def claim_first(backend, task_id: str, host: str | None) -> bool:
    client = backend.client
    key = FIRST_RESULT_KEY.format(task_id)
    mine = json.dumps({"host": host, "at": time.time()})
    ttl = int(app.conf.result_expires)  # as long as the results it guards
    if client.set(key, mine, nx=True, ex=ttl):
        return True
    raw = client.get(key)
    try:
        claim = json.loads(raw) if raw else {}
        age = time.time() - float(claim["at"])
    except (ValueError, KeyError, TypeError):
        claim, age = {}, None
    stored = backend.get_task_meta(task_id).get("status") == states.SUCCESS
    if keep_result(False, stored, age):
        client.set(key, mine, ex=ttl)  # the claimant died before storing: this result counts
        return True
    log.warning("%s: a result of this test is already recorded (by %s): dropping this one",
                task_id, claim.get("host", "another run"))
    return False


def _drop(task, name: str) -> NoReturn:
    log.warning("%s: its re-run elsewhere counts (this host was taken for lost, or another "
                "result is recorded): this run records nothing", name)
    raise Ignore()
