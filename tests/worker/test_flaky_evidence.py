"""A flaky test keeps its failed attempt's evidence: the run_test task (run eagerly, a fake runner
in place of Docker) hands a failed attempt's captures and key logs on to its re-run, and the
flaky record names them under the failed attempt's number, beside the passing attempt's; the
reporter writes both into results.yaml, captures/ and the test-pass zip. Bounded: only the last
failed attempt's, and a test that keeps failing keeps its last attempt's alone."""

from __future__ import annotations

import zipfile
from pathlib import Path

import yaml

import worker.tasks as tasks
from cluster.evidence import CaptureMode
from cluster.models import (
    CAPTURE_SOURCES,
    PeerRecord,
    Status,
    TestRecord,
    capture_file_name,
    log_file_name,
)
from cluster.tasks import RunRequest
from controller.results.finish import finish_pass
from tests.controller.test_finish import case, spec_for
from tests.worker.test_tasks import IMAGE, FakeHost
from worker.runner import RunOutput

TEST = case("a", "b")
STEM = "a_x_b_tcp"


def evidence_of(attempt: int) -> dict[str, bytes]:
    """What read_evidence would give for one attempt: every source, each file marked with the
    attempt that wrote it."""
    return {capture_file_name(TEST.name, source): f"{source} of attempt {attempt}".encode()
            for source in CAPTURE_SOURCES}


class FakeRunner:
    """Stands in for worker.runner.run_test: attempt n ends with `statuses[n - 1]` and that
    attempt's own evidence; remembers whether each attempt was asked for a passing attempt's."""

    def __init__(self, *statuses: Status) -> None:
        self.statuses = list(statuses)
        self.evidence_on_pass: list[bool] = []

    def __call__(self, request: RunRequest, host, evidence_on_pass: bool, phases,
                 teardowns=None, warm=None) -> RunOutput:
        self.evidence_on_pass.append(evidence_on_pass)
        attempt = len(self.evidence_on_pass)
        status = self.statuses[attempt - 1]
        record = TestRecord(name=TEST.name, status=status, host=f"host-{attempt}",
                            rtt_ms=201.0 if status is Status.PASS else None,
                            reason=None if status is Status.PASS else f"timeout {attempt}",
                            dialer=PeerRecord(version="a"), listener=PeerRecord(version="b"),
                            log_file=log_file_name(TEST.name))
        # as worker.runner: a failed attempt's files are read, a passing one's when asked, and
        # none at all with --capture none
        read = request.capture is not CaptureMode.NONE and (evidence_on_pass or status is not
                                                            Status.PASS)
        return RunOutput(record, f"log of attempt {attempt}\n", "services: {}\n",
                         evidence_of(attempt) if read else {})


def run(monkeypatch, runner: FakeRunner, retries: int,
        capture: CaptureMode = CaptureMode.FAILURES) -> dict:
    monkeypatch.setattr(tasks, "this_host", lambda: FakeHost())
    monkeypatch.setattr(tasks, "ensure_image", lambda image_id, source: False)
    monkeypatch.setattr(tasks, "run_one", runner)
    request = RunRequest(pass_id="p", test=TEST, dialer=IMAGE, listener=IMAGE, router=IMAGE,
                         relay=IMAGE, base=IMAGE, retries=retries, capture=capture)
    result = tasks.run_test.apply(args=(TEST.name, request.model_dump(mode="json", by_alias=True)))
    assert result.successful(), result.result
    return result.result


def test_a_flaky_record_keeps_its_failed_attempts_evidence_beside_its_passing_one(
        monkeypatch, tmp_path: Path) -> None:
    runner = FakeRunner(Status.FAIL, Status.PASS)
    message = run(monkeypatch, runner, retries=1)
    record = message["record"]
    assert (record["status"], record["attempts"]) == ("flaky", 2)
    failed = {f"captures/{STEM}.attempt-1.{source}.{kind}": f"{source} of attempt 1"
              for source, kind in CAPTURE_SOURCES.items()}
    passing = {f"captures/{STEM}.{source}.{kind}": f"{source} of attempt 2"
               for source, kind in CAPTURE_SOURCES.items()}
    assert record["captures"] == sorted({**failed, **passing})
    assert runner.evidence_on_pass == [False, True]

    # The reporter accepts the names, writes each file beside results.yaml and into the zip.
    summary = finish_pass(spec_for(tmp_path, [TEST]), [message])
    out = tmp_path / "out"
    written = yaml.safe_load((out / "results.yaml").read_text())["tests"][0]
    assert written["status"] == "flaky" and written["captures"] == record["captures"]
    with zipfile.ZipFile(summary.test_pass_zip) as archive:
        top = "hole-punch-full-101010-25-11-2026/"
        for name, text in {**failed, **passing}.items():
            assert (out / name).read_text() == text
            assert archive.read(top + name).decode() == text
    page = (out / "results.html").read_text()
    assert "capture dialer_router (attempt 1)" in page and "key log listener (attempt 1)" in page


def test_only_the_last_failed_attempt_is_kept(monkeypatch) -> None:
    message = run(monkeypatch, FakeRunner(Status.FAIL, Status.FAIL, Status.PASS), retries=2)
    captures = message["record"]["captures"]
    assert message["record"]["status"] == "flaky"
    assert f"captures/{STEM}.attempt-2.dialer_router.pcap" in captures
    assert not any(".attempt-1." in name for name in captures)
    assert len(captures) == 2 * len(CAPTURE_SOURCES) == len(message["captures"])


def test_a_test_that_keeps_failing_keeps_its_last_attempts_evidence_only(monkeypatch) -> None:
    message = run(monkeypatch, FakeRunner(Status.FAIL, Status.FAIL), retries=1)
    record = message["record"]
    assert (record["status"], record["attempts"]) == ("fail", 2)
    assert record["captures"] == sorted(evidence_of(2))
    assert tasks.from_message(message["captures"]) == evidence_of(2)


def test_with_capture_all_a_plain_pass_keeps_its_own_and_none_keeps_nothing(monkeypatch) -> None:
    message = run(monkeypatch, FakeRunner(Status.PASS), retries=1, capture=CaptureMode.ALL)
    assert message["record"]["captures"] == sorted(evidence_of(1))
    message = run(monkeypatch, FakeRunner(Status.FAIL, Status.PASS), retries=1,
                  capture=CaptureMode.NONE)
    assert message["record"]["status"] == "flaky" and "captures" not in message["record"]
