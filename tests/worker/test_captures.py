"""Evidence: which tests keep it, a cut pcap back to whole packets, its names, the compose
environment that asks routers and clients for it, and the record that names it."""

import base64
import io
import struct
import tarfile

import pytest

from cluster.evidence import CAPTURE_LIMIT, CaptureMode
from cluster.models import PeerRecord, Status, TestRecord
from tests.worker.test_compose import spec
from worker.captures import (
    CLIENT_KEYLOG_FILE,
    ROUTER_CAPTURE_FILE,
    evidence_from,
    evidence_on_pass,
    file_from_tar,
    keeps_captures,
    packet_count,
    whole_packets,
)
from worker.compose import compose_for
from worker.tasks import with_evidence

NAME = "go-v0.51 x go-v0.51 (tcp, noise, yamux)"
STEM = "go-v0.51_x_go-v0.51_tcp_noise_yamux"


def pcap(*payloads: bytes, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    data = struct.pack(f"{order}IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for n, payload in enumerate(payloads):
        data += struct.pack(f"{order}IIII", 1700000000 + n, 0, len(payload), len(payload)) + payload
    return data


def record(status: Status, expected_failure: bool = False) -> TestRecord:
    return TestRecord(name=NAME, status=status, dialer=PeerRecord(version="go-v0.51"),
                      listener=PeerRecord(version="go-v0.51"), expected_failure=expected_failure)


@pytest.mark.parametrize("status, expected_failure, kept", [
    (Status.FAIL, False, True), (Status.FLAKY, False, True),
    (Status.PASS, True, True),                              # an unexpected pass
    (Status.FAIL, True, True),                              # a known failure that failed
    (Status.PASS, False, False), (Status.ERROR, False, False)])
def test_failures_mode_keeps_failed_flaky_and_unexpected_tests(status, expected_failure, kept) -> None:
    assert keeps_captures(record(status, expected_failure), CaptureMode.FAILURES) is kept
    assert keeps_captures(record(status, expected_failure), CaptureMode.ALL) is True
    assert keeps_captures(record(status, expected_failure), CaptureMode.NONE) is False


@pytest.mark.parametrize("big_endian", [False, True])
def test_a_pcap_cut_mid_packet_keeps_its_whole_packets(big_endian) -> None:
    whole = pcap(b"a" * 60, b"b" * 1500, b"c" * 90, big_endian=big_endian)
    assert whole_packets(whole) == whole and packet_count(whole) == 3
    for cut in (len(whole) - 1, len(whole) - 90, len(whole) - 100):
        trimmed = whole_packets(whole[:cut])
        assert packet_count(trimmed) == 2 and whole.startswith(trimmed)
    assert packet_count(whole_packets(whole[:30])) == 0


def test_what_is_no_pcap_is_dropped() -> None:
    assert whole_packets(b"not a capture at all, just text") == b""
    assert whole_packets(b"") == b""


def test_evidence_is_named_by_test_and_source_and_empty_files_are_left_out() -> None:
    capture = pcap(b"x" * 100)
    kept = evidence_from({"dialer_router": capture + b"\x01\x02", "listener_router": pcap(),
                          "dialer": b"CLIENT_HANDSHAKE_TRAFFIC_SECRET 00 11\n", "listener": b""},
                         NAME)
    assert kept == {f"captures/{STEM}.dialer_router.pcap": capture,
                    f"captures/{STEM}.dialer.keys": b"CLIENT_HANDSHAKE_TRAFFIC_SECRET 00 11\n"}


def test_the_file_of_an_engine_archive_is_read_and_bounded() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"k" * 5000
        info = tarfile.TarInfo("holepunch-keys.log")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert file_from_tar(buffer.getvalue()) == b"k" * 5000
    assert file_from_tar(buffer.getvalue(), limit=10) == b"k" * 10


def test_compose_asks_routers_for_a_bounded_capture_and_clients_for_key_logs() -> None:
    services = compose_for(spec(evidence=True))["services"]
    for router in ("dialer_router", "listener_router"):
        assert services[router]["environment"]["CAPTURE_BYTES"] == str(CAPTURE_LIMIT)
        assert services[router]["environment"]["CAPTURE_FILE"] == ROUTER_CAPTURE_FILE
    for client in ("dialer", "listener"):
        assert services[client]["environment"]["SSLKEYLOGFILE"] == CLIENT_KEYLOG_FILE
    plain = compose_for(spec())["services"]
    assert "CAPTURE_BYTES" not in plain["dialer_router"]["environment"]
    assert "SSLKEYLOGFILE" not in plain["dialer"]["environment"]


def test_the_final_record_names_the_evidence_it_keeps() -> None:
    files = {f"captures/{STEM}.dialer_router.pcap": pcap(b"x"), f"captures/{STEM}.dialer.keys": b"k"}
    failed, message = with_evidence(record(Status.FAIL), files, CaptureMode.FAILURES)
    assert failed.captures == sorted(files)
    assert {name: base64.b64decode(text) for name, text in message.items()} == files
    passed, message = with_evidence(record(Status.PASS), files, CaptureMode.FAILURES)
    assert passed.captures is None and message == {}
    passed, message = with_evidence(record(Status.PASS), files, CaptureMode.ALL)
    assert passed.captures == sorted(files) and len(message) == 2


@pytest.mark.parametrize("mode, expected_failure, failed_before, read", [
    (CaptureMode.FAILURES, False, False, False),   # a plain pass keeps nothing: not read
    (CaptureMode.FAILURES, True, False, True),     # would be an unexpected pass
    (CaptureMode.FAILURES, False, True, True),     # would be flaky
    (CaptureMode.ALL, False, False, True), (CaptureMode.NONE, True, True, False)])
def test_a_passing_attempts_evidence_is_read_only_when_it_would_be_kept(
        mode, expected_failure, failed_before, read) -> None:
    assert evidence_on_pass(mode, expected_failure, failed_before) is read
    status = Status.FLAKY if failed_before else Status.PASS
    assert keeps_captures(record(status, expected_failure), mode) is read
