"""A test's evidence: each router's capture of its public side and each client's TLS/QUIC key
log, taken from the containers before teardown, and which tests keep them.

The router writes its capture while the test runs (router.sh, CAPTURE_BYTES: whole packets up
to the bound, then a byte cut); a client whose library honours SSLKEYLOGFILE writes its keys.
The worker reads both files through the engine's API (no bind mount, so the same on a worker
that is itself a container) and keeps them only for the tests `submit --capture` asks for. A
failed attempt that is re-run hands its evidence on to the re-run (worker.tasks): a flaky
test's record keeps it, under the failed attempt's number.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import tarfile

from docker.errors import DockerException

from cluster.evidence import CAPTURE_LIMIT, CaptureMode
from cluster.models import CAPTURE_SOURCES, Status, TestRecord, capture_file_name

# Where the router and the clients write them (worker.compose gives the clients the variable).
ROUTER_CAPTURE_FILE = "/tmp/holepunch-public.pcap"
CLIENT_KEYLOG_FILE = "/tmp/holepunch-keys.log"
PCAP_HEADER = 24
PCAP_RECORD_HEADER = 16
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",     # microseconds
               b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}     # nanoseconds


def keeps_captures(record: TestRecord, mode: CaptureMode) -> bool:
    """Whether a test's final record keeps its evidence: with `failures`, every failure (a
    known one too: it is evidence of why it fails), a flaky test and an unexpected pass; `all`
    keeps every one, `none` none. An error never ran its clients to an end: nothing to keep."""
    if mode is CaptureMode.ALL:
        return True
    if mode is CaptureMode.NONE:
        return False
    if record.status in (Status.FAIL, Status.FLAKY):
        return True
    return record.status is Status.PASS and record.expected_failure


def evidence_on_pass(mode: CaptureMode, expected_failure: bool, failed_before: bool) -> bool:
    """Whether a passing attempt's evidence is read at all: only when it would be kept (every
    failing attempt's is read). A pass keeps it with `all`, as an unexpected pass, or after
    failed attempts (then it is flaky)."""
    if mode is CaptureMode.NONE:
        return False
    return mode is CaptureMode.ALL or expected_failure or failed_before


def whole_packets(data: bytes) -> bytes:
    """A pcap cut at a byte bound, back to its whole packets (b"" when it is no pcap)."""
    order = _PCAP_MAGIC.get(data[:4])
    if order is None or len(data) < PCAP_HEADER:
        return b""
    end = PCAP_HEADER
    while end + PCAP_RECORD_HEADER <= len(data):
        (included,) = struct.unpack_from(f"{order}I", data, end + 8)
        if end + PCAP_RECORD_HEADER + included > len(data):
            break
        end += PCAP_RECORD_HEADER + included
    return data[:end]


def packet_count(data: bytes) -> int:
    """How many whole packets a pcap holds."""
    order = _PCAP_MAGIC.get(data[:4])
    count, at = 0, PCAP_HEADER
    while order and at + PCAP_RECORD_HEADER <= len(data):
        (included,) = struct.unpack_from(f"{order}I", data, at + 8)
        if at + PCAP_RECORD_HEADER + included > len(data):
            break
        count, at = count + 1, at + PCAP_RECORD_HEADER + included
    return count


def file_from_tar(archive: bytes, limit: int = CAPTURE_LIMIT) -> bytes:
    """The one regular file of a tar stream (what the engine's archive call returns), cut at
    `limit` bytes; b"" when there is none."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                return handle.read(limit) if handle else b""
    return b""


def evidence_from(raw: dict[str, bytes], test_name: str) -> dict[str, bytes]:
    """The files read from each service (by service name) under their capture names; an empty
    key log or a capture without one whole packet's header is left out."""
    kept: dict[str, bytes] = {}
    for source, data in raw.items():
        if CAPTURE_SOURCES.get(source) == "pcap":
            data = whole_packets(data[:CAPTURE_LIMIT])
        if len(data) > (PCAP_HEADER if CAPTURE_SOURCES.get(source) == "pcap" else 0):
            kept[capture_file_name(test_name, source)] = data[:CAPTURE_LIMIT]
    return kept


def read_evidence(client, containers: dict[str, str], test_name: str) -> dict[str, bytes]:
    """The test's captures and key logs, by their capture names, from its containers (service
    -> container id: a warm router carries no project label); never raises: a container
    already gone has nothing to give."""
    raw: dict[str, bytes] = {}
    for source, kind in CAPTURE_SOURCES.items():
        path = ROUTER_CAPTURE_FILE if kind == "pcap" else CLIENT_KEYLOG_FILE
        if source not in containers:
            continue
        try:
            stream, _ = client.api.get_archive(containers[source], path)
            raw[source] = file_from_tar(b"".join(stream))
        except (DockerException, tarfile.TarError, OSError):
            continue  # not written (no capture, a library without key logs) or gone
    return evidence_from(raw, test_name)


def of_attempt(evidence: dict[str, bytes], test_name: str, attempt: int) -> dict[str, bytes]:
    """An attempt's evidence (read_evidence's names) under that attempt's own names, so that a
    flaky record can keep its failed attempt's beside its passing one's."""
    sources = {capture_file_name(test_name, source): source for source in CAPTURE_SOURCES}
    return {capture_file_name(test_name, sources[name], attempt): data
            for name, data in evidence.items() if name in sources}


def as_message(files: dict[str, bytes]) -> dict[str, str]:
    return {name: base64.b64encode(data).decode("ascii") for name, data in files.items()}


def from_message(files: dict[str, str]) -> dict[str, bytes]:
    """as_message undone (what a re-run is handed of its failed attempt); a file that is not
    base64 is left out."""
    decoded = {}
    for name, text in files.items():
        try:
            decoded[name] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            continue
    return decoded
