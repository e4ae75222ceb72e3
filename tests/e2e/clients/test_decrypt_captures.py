"""A test's captures decrypt with its clients' key logs: real routers capture their public sides,
real rust and go clients write SSLKEYLOGFILE, and tshark reads the libp2p traffic back.

Each cell runs as the worker runs it with evidence (as `submit --capture all`): the routers'
captures and the clients' key logs are read through the engine before teardown. Then tshark
(`-o tls.keylog_file:<key log>`) decrypts each router's capture with its own side's client key
log, and the hole-punched connection between the two routers' public addresses must show
libp2p in the clear: multistream-select negotiating `/ipfs/ping/1.0.0` (QUIC STREAM frames,
`quic.stream_data`; TLS records over TCP, `data.data`), and every ping the dialer measured, its
32 random bytes sent and echoed (so the capture is whole up to the dialer's end, not missing
its last packets). Over QUIC, the client's connection to the relay decrypts too (its
`/libp2p/circuit/relay/0.2.0/hop` streams). Without the key log, nothing decrypts and no
protocol name is in the capture's bytes.

Not visible even with the key logs: DCUtR's own exchange (`/libp2p/dcutr` on a stream runs over
the relayed connection, which the peers secure end to end inside the relay's stream, a second
layer tshark does not open; go's identify names the protocol, nothing more), and over TCP the
connection to the relay (it speaks noise only: no TLS secrets exist for it).

Needs tshark (.ci/test installs it). Run:
`flock /tmp/holepunch-e2e.lock .venv/bin/python -m pytest tests/e2e/clients/test_decrypt_captures.py`
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster.models import capture_file_name
from tests.e2e.clients.harness import PairResult
from tests.e2e.clients.test_hole_punch import _explain
from worker.outcome import outcome_of

PING = b"/ipfs/ping/1.0.0"
MULTISTREAM = b"/multistream/1.0.0"
RELAY_HOP = b"/libp2p/circuit/relay/0.2.0/hop"
PING_SIZE = 32  # a libp2p ping is 32 random bytes, echoed back
YAMUX_HEADER = 12

# (language, transport, secure channel): QUIC has its own TLS; over TCP only a tls secure
# channel leaves secrets (noise has none).
CELLS = [("rust", "quic", None), ("rust", "tcp", "tls"), ("go", "quic", None), ("go", "tcp", "tls")]


@dataclass(frozen=True)
class Payload:
    """One piece of application data tshark decrypted: a QUIC STREAM frame's data or a TLS
    record's plaintext, with the packet's addresses."""

    src: str
    dst: str
    data: bytes


@dataclass(frozen=True)
class Cell:
    name: str
    result: PairResult
    files: dict[str, Path]          # dialer_router, listener_router, dialer, listener
    folder: Path
    public: dict[str, str]          # each router's public address
    samples: int                    # pings the dialer measured


def tshark_or_skip() -> str:
    found = shutil.which("tshark")
    if found is None:
        pytest.skip("tshark is not installed (apt-get install tshark; .ci/test does)")
    return found


def tshark(*args: str) -> str:
    command = [tshark_or_skip(), "-n", *args]
    run = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, f"{' '.join(command)} exited {run.returncode}: {run.stderr}"
    return run.stdout


def quic_handshakes(pcap: Path) -> dict[str, list[int]]:
    """The frames of each QUIC connection's handshake (its long-header packets), by the
    client's connection ID: a client's packets carry it as source, the server's as destination."""
    handshakes: dict[str, list[int]] = {}
    rows = tshark("-r", str(pcap), "-Y", "quic.long.packet_type", "-T", "fields",
                  "-e", "frame.number", "-e", "quic.long.packet_type", "-e", "quic.scid",
                  "-e", "quic.dcid")
    for row in rows.splitlines():
        frame, kinds, scids, dcids = (row.split("\t") + ["", "", ""])[:4]
        scid, dcid = scids.split(",")[0], dcids.split(",")[0]
        client = dcid if dcid in handshakes else scid
        if client in handshakes or kinds.split(",")[0] == "0":  # known, or a client's Initial
            handshakes.setdefault(client, []).append(int(frame))
    return handshakes


def decrypted(pcap: Path, keylog: Path | None, folder: Path) -> list[Payload]:
    """Every piece of application data tshark shows in the clear in a capture, decrypted with
    `keylog` when given (the NSS key log format, QUIC and TLS alike).

    Two workarounds for tshark 4.0 (Debian bookworm's), both in README "Decrypting a capture":
    its `rdpmt` heuristic takes yamux frames for RDP and, failing on them, stops the TLS
    stream's decryption (so it is disabled); and it keeps one TLS session per UDP 5-tuple, so of
    the two QUIC connections a simultaneous punch opens on one 5-tuple (each side dials) only one
    decrypts. So the capture is read once per QUIC connection, without the other connections'
    handshake packets.
    """
    handshakes = quic_handshakes(pcap) if keylog is not None else {}
    views = [pcap]
    for index, client in enumerate(handshakes):
        others = sorted(f for other, frames in handshakes.items() if other != client
                        for f in frames)
        if others:
            view = folder / f"{pcap.stem}.quic-{index}.pcap"
            tshark("-r", str(pcap), "-Y", f"!(frame.number in {{{','.join(map(str, others))}}})",
                   "-F", "pcap", "-w", str(view))
            views.append(view)
    found: dict[tuple[str, int], Payload] = {}  # by packet (its time) and place in it
    for view in views:
        command = ["-r", str(view), "--disable-protocol", "rdpmt"]
        if keylog is not None:
            command += ["-o", f"tls.keylog_file:{keylog}"]
        rows = tshark(*command, "-Y", "quic.stream_data || (tls && data.data)", "-T", "fields",
                      "-E", "separator=|", "-e", "frame.time_epoch", "-e", "ip.src",
                      "-e", "ip.dst", "-e", "quic.stream_data", "-e", "data.data")
        for row in rows.splitlines():
            when, src, dst, *fields = row.split("|")
            pieces = [text for field in fields for text in field.split(",")
                      if text and text != "<MISSING>"]  # a STREAM frame tshark could not read
            for place, text in enumerate(pieces):
                found[(when, place)] = Payload(src, dst, bytes.fromhex(text.replace(":", "")))
    return list(found.values())


def between(payloads: list[Payload], a: str, b: str) -> list[Payload]:
    return [p for p in payloads if {p.src, p.dst} == {a, b}]


def ping_body(data: bytes) -> bytes | None:
    """A ping's 32 bytes: a QUIC STREAM frame's whole data, a yamux data frame's body (a TLS
    record of the header alone, or header and body together), or what follows the stream's
    protocol negotiation in the same frame (go sends its first ping with it)."""
    _, negotiated, rest = data.partition(PING + b"\n")
    if negotiated and len(rest) == PING_SIZE:
        return rest
    if len(data) == PING_SIZE:
        return data
    if len(data) == YAMUX_HEADER + PING_SIZE and data[:2] == b"\x00\x00" and \
            int.from_bytes(data[8:12], "big") == PING_SIZE:
        return data[YAMUX_HEADER:]
    return None


def echoed_pings(payloads: list[Payload], dialer_ip: str, listener_ip: str) -> int:
    """How many distinct 32-byte pings went from the dialer's side and came back the same."""
    def bodies(src: str, dst: str) -> set[bytes]:
        return {body for p in payloads if (p.src, p.dst) == (src, dst)
                for body in [ping_body(p.data)] if body is not None}
    return len(bodies(dialer_ip, listener_ip) & bodies(listener_ip, dialer_ip))


@pytest.fixture(scope="module", params=CELLS, ids=lambda c: f"{c[0]}-{c[1]}")
def cell(request, built, run_pair, pair_results, tmp_path_factory) -> Cell:
    lang, transport, secure_channel = request.param
    impl = built(lang)
    variant = f"{transport}, {secure_channel}, yamux" if secure_channel else transport
    name = f"{impl.name} x {impl.name} ({variant})"
    result = run_pair(impl.image_id, impl.image_id, transport, test_name=name, evidence=True,
                      secure_channel=secure_channel, muxer="yamux" if secure_channel else None)
    pair_results.append((name, result))
    assert result.passed, _explain(result)
    folder = tmp_path_factory.mktemp(f"{lang}-{transport}")
    files = {}
    for source in ("dialer_router", "listener_router", "dialer", "listener"):
        data = result.evidence.get(capture_file_name(name, source))
        assert data, f"{name}: no {source} evidence (have {sorted(result.evidence)})"
        files[source] = folder / capture_file_name(name, source).rpartition("/")[2]
        files[source].write_bytes(data)
    public = dict(re.findall(r"^(\w+_router)\s*\| router: public \S+ (\S+) ", result.log, re.M))
    assert set(public) == {"dialer_router", "listener_router"}, result.log[-3000:]
    samples = outcome_of(result.exit_code or 0, result.dialer_stdout).rtt_samples_ms or ()
    return Cell(name, result, files, folder, public, len(samples))


@pytest.mark.parametrize("side", ["dialer", "listener"])
def test_the_direct_connection_decrypts_with_that_sides_key_log(cell: Cell, side: str) -> None:
    """Each router's capture, decrypted with its own client's key log: the hole-punched
    connection's streams negotiate ping, and every ping the dialer measured is there."""
    payloads = decrypted(cell.files[f"{side}_router"], cell.files[side], cell.folder)
    direct = between(payloads, cell.public["dialer_router"], cell.public["listener_router"])
    clear = b"".join(p.data for p in direct)
    assert MULTISTREAM in clear and PING in clear, (
        f"{cell.name}: no libp2p in the clear on the direct connection of {side}_router's "
        f"capture ({len(payloads)} decrypted payloads, {len(direct)} on it)")
    assert cell.samples >= 1, cell.result.dialer_stdout
    pings = echoed_pings(direct, cell.public["dialer_router"], cell.public["listener_router"])
    assert pings >= cell.samples, (
        f"{cell.name}: {side}_router's capture holds {pings} echoed pings, the dialer measured "
        f"{cell.samples}: the capture misses the test's last packets")


def test_the_connection_to_the_relay_decrypts_over_quic_only(cell: Cell) -> None:
    """Over QUIC the client's connection to the relay has TLS secrets too; over TCP the relay
    speaks noise, so nothing but the direct connection decrypts."""
    payloads = decrypted(cell.files["dialer_router"], cell.files["dialer"], cell.folder)
    others = [p for p in payloads if cell.public["listener_router"] not in (p.src, p.dst)]
    if "quic" in cell.name:
        assert RELAY_HOP in b"".join(p.data for p in others), cell.name
    else:
        assert others == [], f"{cell.name}: decrypted beside the direct connection: {others[:3]}"


def test_without_the_key_log_nothing_decrypts(cell: Cell, tmp_path: Path) -> None:
    empty = tmp_path / "empty.keys"
    empty.write_text("")
    for router in ("dialer_router", "listener_router"):
        assert decrypted(cell.files[router], None, tmp_path) == [], f"{cell.name}: {router}"
        assert decrypted(cell.files[router], empty, tmp_path) == [], f"{cell.name}: {router}"
        raw = cell.files[router].read_bytes()
        assert PING not in raw and RELAY_HOP not in raw, f"{cell.name}: {router} in the clear"
