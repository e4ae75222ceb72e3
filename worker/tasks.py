"""The `run_test` Celery task: glue between a RunRequest and worker.runner."""

from __future__ import annotations

import logging
from functools import lru_cache

from cluster.app import app
from cluster.errors import InfrastructureError
from cluster.models import PeerRecord, Status, TestRecord, to_yaml_data
from cluster.tasks import RUN_TEST, RunRequest
from worker.host import Host
from worker.images import ImageMismatchError, ensure_image
from worker.runner import log_file_name, run_test as run_one

log = logging.getLogger(__name__)
MAX_INFRA_RETRIES = 3


@lru_cache(maxsize=1)
def this_host() -> Host:
    return Host.from_environment()


def infrastructure_record(request: RunRequest, host: str, reason: str) -> TestRecord:
    """When the host could not run the test at all: a failed record, never a lost test."""
    test = request.test
    return TestRecord(name=test.name, status=Status.FAIL, dialer=PeerRecord(version=test.dialer,
                      image_id=request.dialer.image_id), listener=PeerRecord(
                      version=test.listener, image_id=request.listener.image_id),
                      transport=test.variant, host=host, reason=reason,
                      log_file=log_file_name(test.name), expected_failure=test.expected_failure)


@app.task(name=RUN_TEST, bind=True, acks_late=True, reject_on_worker_lost=True,
          max_retries=MAX_INFRA_RETRIES)
def run_test(self, test_name: str, request_data: dict, failures: list[str] | None = None) -> dict:
    """Run one test here and return {record, log, compose}. `test_name` is for Flower's eyes.

    A failed test is re-queued (any host may take it) while `retries` allow; one that fails and
    then passes is recorded as flaky, never as a plain pass.
    """
    request = RunRequest.model_validate(request_data)
    failures = list(failures or [])
    host = this_host()
    source = request.image_source or host.image_source
    try:
        for image in (request.base, request.router, request.relay, request.dialer, request.listener):
            ensure_image(image.image_id, source)
        output = run_one(request, host)
    except ImageMismatchError as exc:
        log.error("%s: %s", test_name, exc)
        record = infrastructure_record(request, host.name, f"infrastructure: {exc}")
        return {"record": to_yaml_data(record), "log": str(exc), "compose": ""}
    except Exception as exc:  # noqa: BLE001 - InfrastructureError and anything unexpected
        # Anything unexpected (a Redis reply garbled by a dying container, an engine hiccup) is
        # handled like an infrastructure fault: bounded retries, then a failed record. Raising
        # would leave the test without a record and fail the whole chord.
        if not isinstance(exc, InfrastructureError):
            log.exception("%s: unexpected %s", test_name, exc.__class__.__name__)
            exc = InfrastructureError(f"{exc.__class__.__name__}: {exc}")
        if self.request.retries < self.max_retries + len(failures):
            log.warning("%s: %s (retry %d of %d)", test_name, exc, self.request.retries + 1,
                        self.max_retries)
            raise self.retry(exc=exc, countdown=2 ** min(self.request.retries, 5),
                             kwargs={"failures": failures},
                             max_retries=self.max_retries + len(failures))
        record = infrastructure_record(request, host.name, f"infrastructure: {exc}")
        return {"record": to_yaml_data(record), "log": str(exc), "compose": ""}
    record = output.record
    if record.status is Status.FAIL and len(failures) < request.retries \
            and not request.test.expected_failure:
        failures.append(f"{record.host}: {record.reason}")
        log.info("%s failed (%s); re-running it (%d of %d)", test_name, record.reason,
                 len(failures), request.retries)
        raise self.retry(args=(test_name, request_data), kwargs={"failures": failures},
                         countdown=1, max_retries=self.request.retries + 1)
    if failures:
        note = "; ".join(failures)
        if record.status is Status.PASS:
            update = {"status": Status.FLAKY, "reason": f"passed after failing: {note}"}
        else:
            update = {"reason": f"{record.reason} (earlier attempts: {note})"}
        record = record.model_copy(update={**update, "attempts": len(failures) + 1})
    return {"record": to_yaml_data(record), "log": output.log, "compose": output.compose}
