"""Task results -> results.yaml: exactly one record per test, and missing ones make a pass partial."""

from __future__ import annotations

from dataclasses import dataclass

from cluster.models import Results, ResultsMetadata, TestMatrix, TestRecord
from controller.results.report import summarize


@dataclass(frozen=True)
class Collected:
    results: Results
    logs: dict[str, str]       # logFile -> text
    composes: dict[str, str]   # dockerCompose -> text
    duplicates: int            # task results beyond the first for a test (redeliveries)


def collect(metadata: ResultsMetadata, matrix: TestMatrix, payloads: list[dict | None]) -> Collected:
    """Keep the first record of each test of the matrix, in matrix order.

    A redelivered task can report a test twice; a lost one not at all. Neither may pass silently:
    duplicates are dropped (and counted), and a test without a record makes the pass partial.
    """
    wanted = {test.name for test in matrix.tests}
    first: dict[str, TestRecord] = {}
    logs: dict[str, str] = {}
    composes: dict[str, str] = {}
    duplicates = 0
    for payload in payloads:
        if not payload or "record" not in payload:
            continue
        record = TestRecord.model_validate(payload["record"])
        if record.name not in wanted:
            continue
        if record.name in first:
            duplicates += 1
            continue
        first[record.name] = record
        if record.log_file:
            logs[record.log_file] = payload.get("log") or ""
        if record.docker_compose and payload.get("compose"):
            composes[record.docker_compose] = payload["compose"]
    records = [first[test.name] for test in matrix.tests if test.name in first]
    missing = [test.name for test in matrix.tests if test.name not in first]
    meta = metadata.model_copy(update={"partial": bool(missing) or metadata.partial,
                                       "missing_tests": missing})
    summary = summarize(records, total=len(matrix.tests), ignored=matrix.metadata.ignored_tests)
    return Collected(Results(metadata=meta, summary=summary, tests=records), logs, composes,
                     duplicates)


def exit_code_of(results: Results) -> int:
    """0 only for a complete pass without an unexpected failure; 1 otherwise."""
    if results.metadata.partial or results.summary.failed:
        return 1
    return 0
