"""A pass's evidence and timings on the controller's side: captures named in results.yaml,
written beside it and bundled in the zip, refused when they are not the test's own; timings and
RTT anomalies in results.yaml, results.md and results.html."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from cluster.errors import InfrastructureError
from cluster.models import Status
from cluster.tasks import PassSummary
from controller.results.collect import load_results
from controller.results.deliver import deliver
from controller.results.finish import finish_pass
from controller.results.html import render_results_html
from controller.results.report import render_results_md
from tests.controller.test_finish import case, payload, spec_for

PCAP = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000") + b"\x00" * 40


def with_evidence(message: dict, names: list[str], **fields) -> dict:
    message["record"].update(captures=names, failedStep="direct-connection", **fields)
    message["captures"] = {name: base64.b64encode(PCAP).decode() for name in names}
    return message


def failed_with_evidence(test) -> dict:
    return with_evidence(payload(test, Status.FAIL),
                         ["captures/a_x_b_tcp.dialer_router.pcap", "captures/a_x_b_tcp.dialer.keys"])


def timed(test, rtt: float) -> dict:
    message = payload(test, Status.PASS)
    message["record"].update(rttMs=rtt, timeToDirectMs=1432.1, rttSamplesMs=[rtt, rtt + 1, rtt - 1])
    return message


def test_captures_are_named_in_results_yaml_written_beside_it_and_zipped(tmp_path: Path) -> None:
    tests = [case("a", "a"), case("a", "b")]
    summary = finish_pass(spec_for(tmp_path, tests),
                          [timed(tests[0], 201.0), failed_with_evidence(tests[1])])
    out = tmp_path / "out"
    results = yaml.safe_load((out / "results.yaml").read_text())
    failed = results["tests"][1]
    assert failed["captures"] == ["captures/a_x_b_tcp.dialer_router.pcap",
                                  "captures/a_x_b_tcp.dialer.keys"]
    assert failed["failedStep"] == "direct-connection"
    assert (out / "captures" / "a_x_b_tcp.dialer_router.pcap").read_bytes() == PCAP
    assert "captures" not in results["tests"][0]
    with zipfile.ZipFile(summary.test_pass_zip) as archive:
        top = "hole-punch-full-101010-25-11-2026/"
        assert archive.read(top + "captures/a_x_b_tcp.dialer_router.pcap") == PCAP
        assert top + "captures/a_x_b_tcp.dialer.keys" in archive.namelist()
    page = (out / "results.html").read_text()
    assert 'href="captures/a_x_b_tcp.dialer_router.pcap"' in page and "key log dialer" in page
    assert "direct connection" in page  # the step it stopped at, in words
    md = (out / "results.md").read_text()
    assert "## Failures" in md and "`captures/a_x_b_tcp.dialer_router.pcap`" in md


@pytest.mark.parametrize("names", [["captures/b_x_a_tcp.dialer_router.pcap"],  # another test's
                                   ["captures/a_x_b_tcp.relay.pcap"],         # no such source
                                   # an earlier attempt of a record of one attempt
                                   ["captures/a_x_b_tcp.attempt-1.dialer_router.pcap"]])
def test_a_capture_that_is_not_the_tests_own_makes_the_result_an_error(tmp_path: Path,
                                                                       names) -> None:
    tests = [case("a", "b")]
    finish_pass(spec_for(tmp_path, tests), [with_evidence(payload(tests[0], Status.FAIL), names)])
    record = yaml.safe_load((tmp_path / "out" / "results.yaml").read_text())["tests"][0]
    assert record["status"] == "error" and "capture" in record["reason"]
    assert not (tmp_path / "out" / "captures").exists()


def test_a_named_capture_without_its_file_makes_the_result_an_error(tmp_path: Path) -> None:
    tests = [case("a", "b")]
    message = failed_with_evidence(tests[0])
    message["captures"].pop("captures/a_x_b_tcp.dialer.keys")
    finish_pass(spec_for(tmp_path, tests), [message])
    record = yaml.safe_load((tmp_path / "out" / "results.yaml").read_text())["tests"][0]
    assert record["status"] == "error" and "without its file" in record["reason"]


@pytest.mark.parametrize("name", ["captures/../../x.pcap", "/tmp/x.pcap", "logs/a.pcap",
                                  "captures/a_x_b_tcp.dialer_router.exe"])
def test_a_capture_name_outside_captures_fails_validation(tmp_path: Path, name) -> None:
    tests = [case("a", "b")]
    finish_pass(spec_for(tmp_path, tests), [with_evidence(payload(tests[0], Status.FAIL), [name])])
    record = yaml.safe_load((tmp_path / "out" / "results.yaml").read_text())["tests"][0]
    assert record["status"] == "error"
    assert not any(p.suffix in (".pcap", ".exe") for p in tmp_path.rglob("*") if p.is_file()
                   and "cache" not in p.parts)


def test_results_yaml_with_and_without_a_failed_attempts_captures_loads(tmp_path: Path) -> None:
    """An older results.yaml (its last attempt's captures only) and a flaky record's (its failed
    attempt's too, numbered) both load, and report links each by its own label."""
    tests = [case("a", "b"), case("b", "a")]
    flaky = with_evidence(payload(tests[1], Status.FLAKY), [
        "captures/b_x_a_tcp.dialer_router.pcap", "captures/b_x_a_tcp.attempt-1.dialer_router.pcap",
        "captures/b_x_a_tcp.attempt-1.dialer.keys"], attempts=2)
    finish_pass(spec_for(tmp_path, tests), [failed_with_evidence(tests[0]), flaky])
    path = tmp_path / "out" / "results.yaml"
    old, new = load_results(path).tests
    assert old.captures == ["captures/a_x_b_tcp.dialer_router.pcap", "captures/a_x_b_tcp.dialer.keys"]
    assert (new.status, new.attempts) == (Status.FLAKY, 2)
    assert "captures/b_x_a_tcp.attempt-1.dialer.keys" in (new.captures or [])
    page = render_results_html(load_results(path))
    assert "key log dialer (attempt 1)" in page and "capture dialer_router (attempt 1)" in page


def test_timings_and_rtt_anomalies_reach_every_output(tmp_path: Path) -> None:
    tests = [case("a", "a"), case("b", "b")]
    finish_pass(spec_for(tmp_path, tests), [timed(tests[0], 201.0), timed(tests[1], 252.0)])
    out = tmp_path / "out"
    good, odd = yaml.safe_load((out / "results.yaml").read_text())["tests"]
    assert good["timeToDirectMs"] == 1432.1 and good["rttSamplesMs"] == [201.0, 202.0, 200.0]
    assert "rttAnomaly" not in good
    assert odd["rttAnomaly"].startswith("RTT anomaly: 252 ms is 26 % above")
    md = (out / "results.md").read_text()
    assert "🟢 252ms ⚠️" in md and "🟢 201ms |" in md
    assert "| a x a (tcp) | 1432 ms | 201 ms | 201, 202, 200 |" in md and "RTT anomaly" in md
    page = (out / "results.html").read_text()
    assert "Time to direct connection" in page and "1432 ms" in page
    assert "201.0, 202.0, 200.0 ms" in page and "RTT anomaly: 252 ms" in page


def test_report_marks_an_anomaly_in_a_results_yaml_that_has_none(tmp_path: Path) -> None:
    tests = [case("a", "a")]
    finish_pass(spec_for(tmp_path, tests), [timed(tests[0], 300.0)])
    path = tmp_path / "out" / "results.yaml"
    data = yaml.safe_load(path.read_text())
    del data["tests"][0]["rttAnomaly"]  # as an older reporter wrote it
    path.write_text(yaml.safe_dump(data))
    results = load_results(path)
    assert "⚠️" in render_results_md(results)
    assert "RTT anomaly: 300 ms is 50 % above" in render_results_html(results)


def test_captures_come_back_to_an_attached_submit_and_stay_in_its_folder(tmp_path: Path) -> None:
    data = base64.b64encode(PCAP).decode()
    summary = PassSummary(name="p", exit_code=1, partial=False, passed=0, failed=1, flaky=0,
                          known_failures=0, total=1, missing=0, test_pass_zip="z",
                          outputs={"results.md": "# r\n"},
                          captures={"captures/a_x_b_tcp.dialer_router.pcap": data})
    wire = PassSummary.model_validate(json.loads(json.dumps(summary.to_message())))
    local = deliver(wire, tmp_path / "out", None)
    assert (tmp_path / "out" / "captures" / "a_x_b_tcp.dialer_router.pcap").read_bytes() == PCAP
    assert local.captures is None
    escaping = summary.model_copy(update={"captures": {"../x.pcap": data}})
    with pytest.raises(InfrastructureError, match="plain relative"):
        deliver(escaping, tmp_path / "out2", None)
    assert not (tmp_path / "x.pcap").exists()


def test_a_reporter_without_the_output_folder_sends_the_captures_back(tmp_path: Path) -> None:
    tests = [case("a", "b")]
    spec = spec_for(tmp_path, tests).model_copy(update={"output_dir": ""})
    summary = finish_pass(spec, [failed_with_evidence(tests[0])])
    assert set(summary.captures or {}) == {"captures/a_x_b_tcp.dialer_router.pcap",
                                           "captures/a_x_b_tcp.dialer.keys"}
    assert base64.b64decode(summary.captures["captures/a_x_b_tcp.dialer_router.pcap"]) == PCAP
