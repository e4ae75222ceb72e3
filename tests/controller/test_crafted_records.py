"""Crafted task results: nothing a worker's message says is written outside the pass folder or
taken as a verdict. A result that fails validation is an `error` for its test (its name kept);
one that names no test of the pass is dropped, and the test is missing (the pass partial)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cluster.models import Status
from controller.results.finish import finish_pass
from tests.controller.test_finish import case, payload, spec_for

TESTS = [case("a", "a"), case("a", "b")]
MB = 1024 * 1024


ABSOLUTE = "{tmp}/escape-absolute"   # an absolute path into the test's own folder


def _set(path: str, value: object) -> Callable[[dict, Path], None]:
    """A mutation of the first test's payload: `record.logFile`, `log`, ... set to `value`."""
    def mutate(message: dict, tmp: Path) -> None:
        *parents, last = path.split(".")
        target = message
        for key in parents:
            target = target[key]
        target[last] = value.format(tmp=tmp) if isinstance(value, str) and "{tmp}" in value \
            else value
    mutate.__name__ = f"{path}={value!r}"[:60]
    return mutate


# Each keeps the record's name readable: the test becomes an error, name kept.
ATTRIBUTABLE = {
    # path escapes and names outside their folder
    "log ../": _set("record.logFile", "../escape.log"),
    "log logs/../..": _set("record.logFile", "logs/../../escape.log"),
    "log logs/..": _set("record.logFile", "logs/../escape.log"),
    "log absolute": _set("record.logFile", ABSOLUTE + ".log"),
    "log nested": _set("record.logFile", "logs/sub/escape.log"),
    "log dot name": _set("record.logFile", "logs/..log"),
    "log backslash": _set("record.logFile", "logs\\..\\escape.log"),
    "log of another test": _set("record.logFile", "logs/a_x_b_tcp.log"),
    "compose ../..": _set("record.dockerCompose", "../../escape.yaml"),
    "compose absolute": _set("record.dockerCompose", ABSOLUTE + ".yaml"),
    "compose climbs": _set("record.dockerCompose", "docker-compose/../../escape.yaml"),
    "snapshot climbs": _set("record.dialer.snapshot", "../../etc/passwd"),
    "makefile absolute": _set("record.listener.makefile", "/etc/passwd"),
    # NULs and control characters
    "log NUL": _set("record.logFile", "logs/a_x_a_tcp\x00.log"),
    "reason NUL": _set("record.reason", "timeout\x00"),
    "host NUL": _set("record.host", "h1\x00"),
    "host newline": _set("record.host", "h1\nh2"),
    "version NUL": _set("record.dialer.version", "a\x00"),
    "image id NUL": _set("record.dialer.imageID", "c" * 63 + "\x00"),
    # huge strings
    "reason 1 MB": _set("record.reason", "x" * MB),
    "host 10 kB": _set("record.host", "h" * 10_000),
    "duration 10 kB": _set("record.duration", "1" * 10_000),
    "transport 10 kB": _set("record.transport", "t" * 10_000),
    "log 2 MB": _set("log", "l" * 2 * MB),
    "compose 1 MB": _set("compose", "c" * MB),
    # wrong types and values
    "status unknown": _set("record.status", "passed"),
    "status int": _set("record.status", 7),
    "rtt string": _set("record.rttMs", "201"),
    "rtt negative": _set("record.rttMs", -1.0),
    "rtt NaN": _set("record.rttMs", math.nan),
    "rtt bool": _set("record.rttMs", True),
    "exit code string": _set("record.exitCode", "0"),
    "expected failure string": _set("record.expectedFailure", "true"),
    "attempts bool": _set("record.attempts", True),
    "attempts zero": _set("record.attempts", 0),
    "dialer a string": _set("record.dialer", "a"),
    "log an int": _set("log", 123),
    "compose a list": _set("compose", ["services"]),
    "status missing": lambda message, _: message["record"].pop("status"),
    "another dialer": _set("record.dialer.version", "b"),
}

# Nothing in these names a test of the pass: dropped, the test is missing.
UNATTRIBUTABLE = {
    "record a string": _set("record", "pass"),
    "record a list": _set("record", [1, 2]),
    "record missing": lambda message, _: message.pop("record"),
    "name NUL": _set("record.name", "a x a (tcp)\x00"),
    "name 1 MB": _set("record.name", "n" * MB),
    "name an int": _set("record.name", 1),
    "name of no test": _set("record.name", "../../etc/passwd"),
}
NOT_A_MAPPING = {"a list": [1, 2], "a string": "pass", "an int": 42, "true": True}


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def run(tmp_path: Path, first: object) -> tuple[dict, object, set[Path]]:
    spec = spec_for(tmp_path, TESTS)
    before = files_under(tmp_path)
    summary = finish_pass(spec, [first, payload(TESTS[1], Status.PASS)])
    written = files_under(tmp_path) - before
    out, passes = tmp_path / "out", tmp_path / "cache" / "test-passes"
    outside = {path for path in written if out not in path.parents and passes not in path.parents}
    assert not outside, outside
    return yaml.safe_load((out / "results.yaml").read_text()), summary, written


@pytest.mark.parametrize("mutation", ATTRIBUTABLE.values(), ids=ATTRIBUTABLE.keys())
def test_an_invalid_result_is_an_error_for_its_test(tmp_path: Path, mutation) -> None:
    message = payload(TESTS[0], Status.PASS)
    mutation(message, tmp_path)
    results, summary, written = run(tmp_path, message)
    first = results["tests"][0]
    assert (first["name"], first["status"]) == ("a x a (tcp)", "error")
    assert first["reason"].startswith("invalid result from the worker")
    assert "logFile" not in first and "rttMs" not in first
    assert results["tests"][1]["status"] == "pass"
    assert results["summary"]["errors"] == 1 and results["summary"]["passed"] == 1
    assert summary.exit_code == 3 and not summary.partial
    assert not (tmp_path / "out" / "logs" / "a_x_a_tcp.log").exists()  # nothing from it
    assert len(first["reason"]) <= 8192


@pytest.mark.parametrize("mutation", UNATTRIBUTABLE.values(), ids=UNATTRIBUTABLE.keys())
def test_a_result_naming_no_test_is_dropped_and_the_test_missing(tmp_path: Path, mutation) -> None:
    message = payload(TESTS[0], Status.PASS)
    mutation(message, tmp_path)
    results, summary, _ = run(tmp_path, message)
    assert [t["name"] for t in results["tests"]] == ["a x b (tcp)"]
    assert results["metadata"]["missingTests"] == ["a x a (tcp)"]
    assert summary.partial and summary.exit_code == 1
    assert "1 results were dropped" in (tmp_path / "out" / "output.log").read_text()


@pytest.mark.parametrize("message", NOT_A_MAPPING.values(), ids=NOT_A_MAPPING.keys())
def test_a_result_that_is_not_a_mapping_is_dropped(tmp_path: Path, message) -> None:
    results, summary, _ = run(tmp_path, message)
    assert results["metadata"]["missingTests"] == ["a x a (tcp)"] and summary.exit_code == 1


def test_a_valid_result_after_an_invalid_one_is_the_record(tmp_path: Path) -> None:
    bad = payload(TESTS[0], Status.PASS)
    bad["record"]["logFile"] = "../escape.log"
    spec = spec_for(tmp_path, TESTS)
    summary = finish_pass(spec, [bad, payload(TESTS[0], Status.PASS), payload(TESTS[1], Status.PASS)])
    assert summary.exit_code == 0 and summary.errors == 0
    assert (tmp_path / "out" / "logs" / "a_x_a_tcp.log").read_text() == "log of a x a (tcp) on h1\n"


def test_the_matrix_not_the_message_says_which_test_is_a_known_failure(tmp_path: Path) -> None:
    message = payload(TESTS[0], Status.FAIL)
    message["record"]["expectedFailure"] = True  # a crafted claim: the matrix does not say so
    results, summary, _ = run(tmp_path, message)
    assert results["tests"][0]["status"] == "fail" and results["tests"][0]["expectedFailure"] is False
    assert summary.failed == 1 and summary.known_failures == 0 and summary.exit_code == 1
