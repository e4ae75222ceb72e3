"""The messages between controller and workers: task names, the request, its result, the
pass's summary, and the signatures.

The controller never imports the worker: it names the task, and the worker registers it. What
comes back is read only through these models: a result that does not validate is never used as
it came (`read_result`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from celery import Signature
from pydantic import Field, StrictStr, StringConstraints, ValidationError

from cluster.app import app
from cluster.celeryconfig import DEFAULT_TEST_TIMEOUT, TEST_QUEUE
from cluster.evidence import CAPTURE_LIMIT, CaptureMode
from cluster.models import (
    CAPTURES_PER_RECORD,
    NAME_LIMIT,
    CaptureFile,
    ImageInfo,
    Status,
    TestCase,
    TestRecord,
    YamlModel,
    to_yaml_data,
)
from cluster.network import DEFAULT_DELAY_MS

LOG_LIMIT = 512 * 1024       # a result travels through the broker: a worker keeps a log's tail
COMPOSE_LIMIT = 256 * 1024   # a test's compose file is a few kB
_CAPTURE_TEXT = 4 * ((CAPTURE_LIMIT + 2) // 3)  # base64 of CAPTURE_LIMIT bytes

RUN_TEST = "holepunch.run_test"
AGGREGATE = "holepunch.aggregate"
# How often one run of a test (a task id at one retry count) was delivered to a task process:
# a redelivery after its process died (OOM, a crash, SIGKILL) counts, so a test that kills its
# process every time is given up on (worker.attempts.MAX_DELIVERIES) instead of looping forever.
DELIVERIES_KEY = "holepunch:deliveries:{task_id}:{retries}"
DELIVERIES_TTL = 7 * 24 * 3600


class RunRequest(YamlModel):
    """Everything a worker needs to run one test on any Docker host."""

    pass_id: str
    test: TestCase
    dialer: ImageInfo
    listener: ImageInfo
    router: ImageInfo
    relay: ImageInfo
    base: ImageInfo  # the global Redis runs on it
    timeout_seconds: int = Field(default=DEFAULT_TEST_TIMEOUT, gt=0)
    delay_ms: int = DEFAULT_DELAY_MS
    image_source: str | None = None  # cache directory or http(s) URL holding images/<id>.tar.zst
    retries: int = Field(default=0, ge=0)  # re-runs of a failing test (on any host) before it fails
    capture: CaptureMode = CaptureMode.FAILURES


# Signatures are bound to our app, never to Celery's "current app" (the last one created in the
# process, which a library or a test may have made).
def run_test_signature(request: RunRequest) -> Signature:
    """`run_test(test name, request)`: the name comes first, and monitors (Flower's args column,
    `celery inspect`) are shown only the name, not the whole request."""
    return app.signature(RUN_TEST, args=(request.test.name,
                                     request.model_dump(mode="json", by_alias=True)),
                     queue=TEST_QUEUE, argsrepr=repr((request.test.name,)), kwargsrepr="{}")


def aggregate_signature(spec: dict[str, Any], queue: str) -> Signature:
    """The chord's body; Celery passes the list of run_test results first."""
    return app.signature(AGGREGATE, args=(spec,), queue=queue)


class RunResult(YamlModel):
    """What `run_test` returns: the record, and the texts the pass's outputs store beside it."""

    record: TestRecord
    log: Annotated[StrictStr, StringConstraints(max_length=LOG_LIMIT)] = ""       # logs/<test>.log
    compose: Annotated[StrictStr, StringConstraints(max_length=COMPOSE_LIMIT)] = ""  # its compose file
    # The files record.captures names, base64: captures/<stem>[.attempt-<n>].<source>.pcap|keys
    captures: dict[CaptureFile, Annotated[StrictStr, StringConstraints(
        max_length=_CAPTURE_TEXT, pattern=r"^[A-Za-z0-9+/]*={0,2}$")]] = Field(
        default_factory=dict, max_length=CAPTURES_PER_RECORD)

    @property
    def ok(self) -> bool:
        return self.record.ok

    def to_message(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class Rejected:
    """A task result that did not validate: never a verdict, at most an error for its test."""

    name: str | None   # the test it says it is for, when that much is a readable name
    problem: str


def read_result(payload: object) -> RunResult | Rejected:
    """A task's result as the model, or why not (never raises)."""
    try:
        return RunResult.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        problem = f"invalid result from the worker: {where}: {first['msg']}"
    record = payload.get("record") if isinstance(payload, dict) else None
    name = record.get("name") if isinstance(record, dict) else None
    readable = isinstance(name, str) and 0 < len(name) <= NAME_LIMIT
    return Rejected(name if readable else None, problem)


class ErrorNote(YamlModel):
    name: str
    reason: str | None = None
    host: str | None = None


class PassSummary(YamlModel):
    """What finishing a pass returns (the chord's `aggregate`, or submit itself when it stops a
    pass short): `submit` and `status` read it, on the wire in camelCase."""

    name: str
    exit_code: int
    partial: bool
    passed: int
    failed: int
    flaky: int
    known_failures: int
    unexpected_passes: int = 0  # known failures that passed: the list can shrink
    errors: int = 0
    total: int
    missing: int
    test_pass_zip: str
    test_pass_zip_bytes: int | None = None
    test_pass_zip_seconds: float | None = None
    wheelhouse: int | None = None   # wheels bundled for an offline re-run
    results_yaml: str | None = None  # None: the reporter wrote no file; see `outputs`
    results_md: str | None = None
    results_html: str | None = None
    flaky_names: list[str] = Field(default_factory=list)
    error_tests: list[ErrorNote] = Field(default_factory=list)
    # An attached pass's results.yaml, results.md, results.html, output.log and logs/ by their
    # names, for submit to write where its user asked (controller.results.deliver checks each
    # name): the reporter may not see that folder.
    outputs: dict[str, str] | None = None
    # And its captures/ (binary: base64 here), checked and written the same way.
    captures: dict[str, str] | None = None

    @classmethod
    def of(cls, records: list[TestRecord], **fields: Any) -> PassSummary:
        """With the names of its flaky tests and its errors (and why) taken from `records`."""
        return cls(flaky_names=[r.name for r in records if r.status is Status.FLAKY],
                   error_tests=[ErrorNote(name=r.name, reason=r.reason, host=r.host)
                                for r in records if r.status is Status.ERROR], **fields)

    def to_message(self) -> dict[str, Any]:
        return to_yaml_data(self)
