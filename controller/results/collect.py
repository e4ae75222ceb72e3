"""Task results -> results.yaml: exactly one record per test, and missing ones make a pass partial.

A result is a message from a worker, not a fact: it is validated (cluster.tasks.read_result) and
checked against the pass's own matrix before anything is written from it. One that fails
becomes an `error` record for its test, never a verdict and never a file outside the pass.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from cluster.errors import EXIT_INFRASTRUCTURE
from cluster.models import (
    NAME_LIMIT,
    PeerRecord,
    Results,
    ResultsMetadata,
    Status,
    TestCase,
    TestMatrix,
    TestRecord,
    as_reason,
    capture_file_names,
    log_file_name,
)
from cluster.tasks import Rejected, RunResult, read_result
from cluster.timings import rtt_anomaly
from cluster.yamlio import read_yaml, validate
from controller.results.report import summarize


@dataclass(frozen=True)
class Collected:
    results: Results
    logs: dict[str, str]       # logFile -> text
    composes: dict[str, str]   # dockerCompose -> text
    duplicates: int            # task results beyond the first for a test (redeliveries)
    rejected: int = 0          # results that named no test of the pass (or no readable name)
    captures: dict[str, bytes] = field(default_factory=dict)  # captures/... -> bytes


def mismatch(result: RunResult, test: TestCase) -> str | None:
    """Why a valid result cannot be this test's record, or None: what the controller knows it
    takes from its own matrix, and file names are the ones it would give them."""
    record = result.record
    if (record.dialer.version, record.listener.version) != (test.dialer, test.listener):
        return (f"invalid result from the worker: it is for dialer {record.dialer.version!r} and "
                f"listener {record.listener.version!r}, the test is {test.dialer!r} x "
                f"{test.listener!r}")
    if record.log_file not in (None, log_file_name(test.name)):
        return f"invalid result from the worker: logFile {record.log_file!r} is not this test's"
    names = capture_file_names(test.name, record.attempts) if record.captures else set()
    for name in record.captures or ():
        if name not in names:
            return f"invalid result from the worker: capture {name!r} is not this test's"
        if name not in result.captures:
            return f"invalid result from the worker: capture {name!r} came without its file"
    return None


def decoded_captures(result: RunResult) -> dict[str, bytes]:
    """The files a valid record names, decoded (mismatch checked each is there)."""
    files = {}
    for name in result.record.captures or ():
        try:
            files[name] = base64.b64decode(result.captures[name], validate=True)
        except (binascii.Error, ValueError):
            continue  # not base64 after all: the record still names it, the file is absent
    return files


def with_timings(record: TestRecord) -> TestRecord:
    """The record marked with an RTT anomaly when its passing RTT strays from the model."""
    passed = record.status in (Status.PASS, Status.FLAKY)
    anomaly = rtt_anomaly(record.rtt_ms) if passed else None
    return record.model_copy(update={"rtt_anomaly": anomaly})


def collect(metadata: ResultsMetadata, matrix: TestMatrix, payloads: list[object]) -> Collected:
    """Keep the first record of each test of the matrix, in matrix order.

    A redelivered task can report a test twice; a lost one not at all. Neither may pass silently:
    duplicates are dropped (and counted), and a test without a record makes the pass partial.
    A result that fails validation is that test's `error` unless a valid one arrives too.
    """
    tests = {test.name: test for test in matrix.tests}
    first: dict[str, RunResult] = {}
    invalid: dict[str, TestRecord] = {}
    duplicates = rejected = 0
    for payload in payloads:
        if payload is None:
            continue
        result = read_result(payload)
        if isinstance(result, Rejected):
            test = tests.get(result.name) if result.name is not None else None
            if test is None:
                rejected += 1
            elif result.name not in first:
                invalid.setdefault(test.name, TestRecord.error(test, result.problem))
            continue
        test = tests.get(result.record.name)
        if test is None:
            rejected += 1
            continue
        if test.name in first:
            duplicates += 1
            continue
        problem = mismatch(result, test)
        if problem is not None:
            invalid.setdefault(test.name, TestRecord.error(test, problem, host=result.record.host))
            continue
        first[test.name] = result.model_copy(update={"record": with_timings(
            result.record.model_copy(update={"expected_failure": test.expected_failure,
                                             "transport": test.variant,
                                             **test.dimensions()}))})
        invalid.pop(test.name, None)
    records: list[TestRecord] = []
    logs: dict[str, str] = {}
    composes: dict[str, str] = {}
    captures: dict[str, bytes] = {}
    for test in matrix.tests:
        if test.name in first:
            result = first[test.name]
            records.append(result.record)
            captures.update(decoded_captures(result))
            if result.record.log_file:
                logs[result.record.log_file] = result.log
            if result.record.docker_compose and result.compose:
                composes.setdefault(result.record.docker_compose, result.compose)
        elif test.name in invalid:
            records.append(invalid[test.name])
    done = {record.name for record in records}
    missing = [test.name for test in matrix.tests if test.name not in done]
    meta = metadata.model_copy(update={"partial": bool(missing) or metadata.partial,
                                       "missing_tests": missing})
    summary = summarize(records, total=len(matrix.tests), ignored=matrix.metadata.ignored_tests)
    return Collected(Results(metadata=meta, summary=summary, tests=records), logs, composes,
                     duplicates, rejected, captures)


def exit_code_of(results: Results) -> int:
    """3 when a test ended on an infrastructure fault (status error): the pass could not judge
    it; else 0 only for a complete pass without an unexpected failure, and 1 otherwise."""
    if results.summary.errors:
        return EXIT_INFRASTRUCTURE
    if results.metadata.partial or results.summary.failed:
        return 1
    return 0


def _version(side: object) -> str:
    version = side.get("version") if isinstance(side, dict) else None
    try:
        return PeerRecord(version=version).version
    except ValidationError:
        return "invalid"


def _record_or_error(item: object) -> object:
    """A results.yaml test as its record; one that fails validation but has a readable name is
    an error record for it (nothing it names is read or linked); anything else is left for
    validation to name."""
    try:
        return TestRecord.model_validate(item)
    except ValidationError as exc:
        name = item.get("name") if isinstance(item, dict) else None
        if (not isinstance(item, dict) or not isinstance(name, str) or not 0 < len(name) <= NAME_LIMIT
                or not name.isprintable()):
            return item
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return TestRecord(name=name, status=Status.ERROR, dialer=PeerRecord(
            version=_version(item.get("dialer"))), listener=PeerRecord(
            version=_version(item.get("listener"))),
            reason=as_reason(f"invalid record in results.yaml: {where}: {first['msg']}"))


def load_results(path: Path) -> Results:
    """results.yaml from disk (`report`): its metadata and summary must validate (exit 2 naming
    the key); a test record that does not is an error record for its test, as a worker's
    invalid result is, and the summary is counted again from the records."""
    data = read_yaml(path)
    tests = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(tests, list):
        return validate(Results, data, path)
    records = [_record_or_error(item) for item in tests]
    results = validate(Results, {**data, "tests": records}, path)
    if any(isinstance(r, TestRecord) and r.status is Status.ERROR for r in records) and \
            not results.summary.errors:
        summary = summarize(results.tests, total=results.summary.total,
                            ignored=results.summary.ignored)
        results = results.model_copy(update={"summary": summary})
    return results
