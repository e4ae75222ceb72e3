"""What `submit` shows on the terminal: a live progress bar with one line per finished test
while the pass runs, then the pass's summary.

`follow` polls the chord's results; a broker that drops out is waited for until the pass's
deadline, never past it. When every test has a result but the chord's callback has not come
for `grace` seconds (a lost callback), it asks `recover` to finish the pass
(controller.results.recover) instead of waiting for the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import celery.exceptions
import kombu.exceptions
import redis.exceptions
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cluster.models import Status, TestRecord
from cluster.tasks import PassSummary, Rejected, read_result

BROKER_ERRORS = (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                 kombu.exceptions.OperationalError)


def record_line(record: TestRecord) -> str:
    """One finished test, as the terminal shows it."""
    if record.status is Status.ERROR:
        return f"{'ERROR':>13}  {record.name}: {record.reason} [{record.host}]"
    if record.status is Status.FAIL:
        mark = "known failure" if record.expected_failure else "FAIL"
        return f"{mark:>13}  {record.name}: {record.reason} [{record.host}]"
    return f"{record.status.value.upper():>13}  {record.name}: {record.rtt_ms:.0f} ms [{record.host}]"


REFRESH_S = 0.5  # at most between two looks at the tests' results


def follow(result, group, total: int, deadline: float, console: Console,
           check: Callable[[], None] | None = None,
           recover: Callable[[], PassSummary | None] | None = None,
           grace: float = 20.0) -> tuple[PassSummary | None, str]:
    """Show progress until the aggregate is done: (its summary, ""), or (None, why) if the
    deadline passes first. `check` raises when the cluster is broken beyond waiting for.
    `recover` finishes a pass whose callback is `grace` seconds overdue, once: its summary, or
    None when someone else (the reporter) finishes it, whose result is then waited for."""
    seen: set[str] = set()
    complete_since: float | None = None  # when the last test reported
    passed = failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("pass {task.fields[passed]} fail {task.fields[failed]}"),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task("tests", total=total, passed=0, failed=0)
        broker_lost_at: float | None = None
        while True:
            if check is not None:
                check()  # raises InfrastructureError: the caller writes what finished
            try:
                newly = [child for child in group.results
                         if child.id not in seen and child.ready()]
                aggregate_ready = result.ready()
            except BROKER_ERRORS as exc:
                # A broker restart: keep asking until the deadline; never hang past it.
                if broker_lost_at is None:
                    broker_lost_at = time.monotonic()
                    progress.console.print(f"broker unreachable ({exc.__class__.__name__}); "
                                           "waiting for it until the pass's deadline")
                if time.monotonic() > deadline:
                    console.print("deadline passed while the broker was unreachable")
                    return None, "the pass outlived its deadline (broker unreachable)"
                time.sleep(1)
                continue
            if broker_lost_at is not None:
                progress.console.print(f"broker back after {time.monotonic() - broker_lost_at:.0f} s")
                broker_lost_at = None
            for child in newly:
                if child.id in seen:
                    continue
                seen.add(child.id)
                read = read_result(child.result) if child.successful() else None
                if read is not None and not isinstance(read, Rejected):
                    passed, failed = passed + read.ok, failed + (not read.ok)
                    progress.console.print(record_line(read.record))
                else:
                    failed += 1
                    why = read.problem if read is not None else repr(child.result)
                    progress.console.print(f"{'ERROR':>13}  task {child.id}: {why[:500]}",
                                           markup=False)
                progress.update(task, completed=len(seen), passed=passed, failed=failed)
            if aggregate_ready:
                if result.successful():
                    return PassSummary.model_validate(result.result), ""
                console.print(f"the aggregate failed: {result.result!r}")
                return None, f"the aggregate failed: {result.result!r}"
            if len(seen) == total and recover is not None:
                complete_since = complete_since or time.monotonic()
                if time.monotonic() - complete_since >= grace:
                    console.print(f"every test reported {grace:.0f} s ago but the pass's "
                                  "callback has not finished it: finishing it from the stored "
                                  "results")
                    finish, recover = recover, None
                    try:
                        summary = finish()
                    except BROKER_ERRORS as exc:  # the broker is gone: the deadline decides
                        console.print(f"could not finish it: {exc}")
                        summary = None
                    if summary is not None:
                        return summary, ""
            if time.monotonic() > deadline:
                console.print("deadline passed before every test reported" if len(seen) < total
                              else "deadline passed before the pass's callback finished it")
                return None, "the pass outlived its deadline"
            _wait_for(result, REFRESH_S)


def _wait_for(result, seconds: float) -> None:
    """Until the aggregate's result is stored or `seconds` pass: the result backend wakes this
    the moment it is, so the end of a pass is not waited out on a fixed sleep."""
    try:
        result.get(timeout=seconds, propagate=False, disable_sync_subtasks=False)
    except celery.exceptions.TimeoutError:
        pass
    except BROKER_ERRORS:
        pass  # the next round tells the broker's loss and waits for it


def report_summary(summary: PassSummary, console: Console) -> None:
    """results.md, the counts, where the outputs are; the tests that ended on an error last."""
    assert summary.results_md is not None  # set by controller.results.deliver before this
    console.print(Path(summary.results_md).read_text(encoding="utf-8"), markup=False)
    state = "PARTIAL" if summary.partial else "complete"
    counts = [f"{summary.passed} passed", f"{summary.failed} failed",
              *([f"{summary.flaky} flaky"] if summary.flaky else []),
              *([f"{summary.known_failures} known failures"] if summary.known_failures else []),
              *([f"{summary.unexpected_passes} unexpected passes (known failures that passed: "
                 "drop them from known-failures)"] if summary.unexpected_passes else []),
              *([f"{summary.errors} errors"] if summary.errors else []),
              *([f"{summary.missing} missing"] if summary.missing else [])]
    console.print(f"{state}: {', '.join(counts)} of {summary.total}")
    html = f", {summary.results_html}" if summary.results_html else ""
    console.print(f"results: {summary.results_yaml}, {summary.results_md}{html}")
    zip_note = "" if Path(summary.test_pass_zip).is_file() else " (on the reporter's host)"
    console.print(f"test pass: {summary.test_pass_zip}{zip_note}")
    if summary.test_pass_zip_bytes is not None:
        console.print(f"test-pass zip: {summary.test_pass_zip_bytes / 1e6:.1f} MB, written in "
                      f"{summary.test_pass_zip_seconds or 0:.1f} s")
    if summary.wheelhouse == 0:
        console.print("test-pass zip: warning: the cache has no wheelhouse (wheels/, made by "
                      "`bash .ci/setup`), so its re-run.sh needs PyPI to install holepunch's "
                      "Python dependencies")
    if summary.error_tests:  # last, so a CI log's tail names them
        console.print(f"{len(summary.error_tests)} tests ended on an infrastructure fault after "
                      "their retries (status error; no verdict on them, exit 3):", markup=False)
        for note in summary.error_tests:
            console.print(f"{'ERROR':>13}  {note.name}: {note.reason} [{note.host}]", markup=False)
