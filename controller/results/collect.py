"""Task results -> results.yaml: exactly one record per test, and missing ones make a pass partial.

A result is a message from a worker, not a fact: it is validated (cluster.tasks.read_result) and
checked against the pass's own matrix before anything is written from it. One that fails
becomes an `error` record for its test, never a verdict and never a file outside the pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.errors import EXIT_INFRASTRUCTURE
from cluster.models import (Results, ResultsMetadata, TestCase, TestMatrix, TestRecord,
                            log_file_name)
from cluster.tasks import Rejected, RunResult, read_result
from controller.results.report import summarize


@dataclass(frozen=True)
class Collected:
    results: Results
    logs: dict[str, str]       # logFile -> text
    composes: dict[str, str]   # dockerCompose -> text
    duplicates: int            # task results beyond the first for a test (redeliveries)
    rejected: int = 0          # results that named no test of the pass (or no readable name)


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
    return None


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
        first[test.name] = result.model_copy(update={"record": result.record.model_copy(update={
            "expected_failure": test.expected_failure, "transport": test.variant})})
        invalid.pop(test.name, None)
    records: list[TestRecord] = []
    logs: dict[str, str] = {}
    composes: dict[str, str] = {}
    for test in matrix.tests:
        if test.name in first:
            result = first[test.name]
            records.append(result.record)
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
                     duplicates, rejected)


def exit_code_of(results: Results) -> int:
    """3 when a test ended on an infrastructure fault (status error): the pass could not judge
    it; else 0 only for a complete pass without an unexpected failure, and 1 otherwise."""
    if results.summary.errors:
        return EXIT_INFRASTRUCTURE
    if results.metadata.partial or results.summary.failed:
        return 1
    return 0
