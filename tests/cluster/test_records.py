"""The record model on its own: file names stay under their folders, strings are bounded, types
strict; the one "ok" rule; log file names always valid; results read back without raising."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cluster.models import REASON_LIMIT, ImageInfo, PeerRecord, Status, TestRecord, as_reason, log_file_name
from cluster.tasks import Rejected, RunResult, read_result

GOOD = {"name": "a x b (tcp)", "status": "pass", "rttMs": 201, "dialer": {"version": "a"},
        "listener": {"version": "b"}, "logFile": "logs/a_x_b_tcp.log",
        "dockerCompose": f"docker-compose/{'a' * 64}.yaml"}

BAD_NAMES = [
    ("logFile", "../x.log"), ("logFile", "logs/../x.log"), ("logFile", "logs/../../x.log"),
    ("logFile", "/tmp/x.log"), ("logFile", "logs/a/b.log"), ("logFile", "logs/..log"),
    ("logFile", "logs/x.log\n"), ("logFile", "logs/x\x00.log"), ("logFile", "logs/x.txt"),
    ("logFile", "logs/" + "x" * 300 + ".log"),
    ("dockerCompose", "docker-compose/../x.yaml"), ("dockerCompose", "/docker-compose/x.yaml"),
    ("dockerCompose", "docker-compose/" + "a" * 63 + ".yaml"),
]


def test_the_good_record_validates() -> None:
    assert TestRecord.model_validate(GOOD).rtt_ms == 201.0


@pytest.mark.parametrize("key, value", BAD_NAMES)
def test_a_file_name_outside_its_folder_is_refused(key: str, value: str) -> None:
    with pytest.raises(ValidationError):
        TestRecord.model_validate({**GOOD, key: value})


@pytest.mark.parametrize("field, value", [
    ("snapshot", "../../etc/passwd"), ("snapshot", "/etc/passwd"), ("makefile", "build/x"),
    ("snapshot", "snapshots/"), ("snapshot", "snapshots/.."),
])
def test_an_image_names_its_files_only_in_the_cache_folders(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        PeerRecord.model_validate({"version": "a", field: value})
    image = {"imageID": "a" * 64, "imageName": "x", "builtAt": "t", "arch": "x86_64"}
    with pytest.raises(ValidationError):
        ImageInfo.model_validate({**image, field: value})


def test_an_image_id_has_one_form_and_one_engine_name() -> None:
    image = ImageInfo.model_validate({"imageID": "sha256:" + "a" * 64, "imageName": "x",
                                      "builtAt": "t", "arch": "x86_64"})
    assert image.image_id == "a" * 64 and image.ref == "sha256:" + "a" * 64
    with pytest.raises(ValidationError):
        ImageInfo.model_validate({**image.model_dump(by_alias=True), "imageID": "a" * 64 + "\n"})


@pytest.mark.parametrize("status, expected, ok", [
    (Status.PASS, False, True), (Status.FLAKY, False, True), (Status.FAIL, True, True),
    (Status.FAIL, False, False), (Status.ERROR, True, False), (Status.ERROR, False, False),
    (Status.PASS, True, True),
])
def test_one_ok_rule(status: Status, expected: bool, ok: bool) -> None:
    record = TestRecord.model_validate({**GOOD, "status": status.value, "expectedFailure": expected})
    assert record.ok is ok
    assert RunResult(record=record).ok is ok


def test_log_file_names_are_always_valid_and_the_seeds() -> None:
    assert log_file_name("rust-v0.53 x go-v0.51 (tcp, noise, yamux)") == \
        "logs/rust-v0.53_x_go-v0.51_tcp_noise_yamux.log"
    for name in ["a" * 1000 + " x b (tcp)", "..", "a/../../b", "\x00 x \n"]:
        TestRecord.model_validate({**GOOD, "logFile": log_file_name(name)})
    assert log_file_name("a" * 300 + "1") != log_file_name("a" * 300 + "2")


def test_a_reason_from_anything_validates() -> None:
    reason = as_reason("\x00\x07\x1b[0m" + "x" * 100_000)
    assert len(reason) == REASON_LIMIT and reason.startswith("\\x00\\x07\\x1b[0m")
    TestRecord.model_validate({**GOOD, "reason": reason})
    assert as_reason("two\nlines\tand a tab") == "two\nlines\tand a tab"


@pytest.mark.parametrize("payload, name", [
    (None, None), ([], None), ("x", None), ({"record": "x"}, None), ({"record": {"name": 5}}, None),
    ({"record": {"name": "a x b (tcp)"}}, "a x b (tcp)"),
    ({"record": {**GOOD, "rttMs": "201"}}, "a x b (tcp)"),
    ({"record": GOOD, "log": 5}, "a x b (tcp)"),
])
def test_read_result_never_raises(payload, name) -> None:
    read = read_result(payload)
    assert isinstance(read, Rejected) and read.name == name
    assert read.problem.startswith("invalid result from the worker")
