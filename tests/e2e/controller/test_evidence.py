"""Evidence and timings in a real pass: `submit` on the embedded default, real routers, real
clients. A known-failing cell (go dialer, js listener over QUIC: js-libp2p never upgrades here)
keeps each router's capture of its public side and the go client's QUIC key log, named in
results.yaml; a passing go x go test reports its time to the direct connection and its RTT as
the median of at least three samples, and keeps no evidence (the default `--capture failures`).
"""

from __future__ import annotations

import ipaddress
import re
import struct
import zipfile
from pathlib import Path

import pytest
import yaml

from cluster.progress import FAILED_STEPS
from cluster.timings import MIN_RTT_SAMPLES, median
from tests.e2e.controller.test_submit import engine_or_skip, submit

PASSING = "go-v0.51 x go-v0.51 (quic)"
# Theory says no punch can work between two symmetric NATs (an expected failure): go's own
# dialer, so its QUIC key log is there too. Only these two of the NAT pairs --nat makes run.
FAILING = "go-v0.51 x go-v0.51 (quic) [symmetric x symmetric]"
NAT = ("--nat", "port-restricted-cone,symmetric",
       "--test-ignore", "[port-restricted-cone x symmetric]|[symmetric x port-restricted-cone]")


def ipv4_sources(pcap: bytes) -> list[str]:
    """The IPv4 source of every packet of an Ethernet pcap (little-endian, as tcpdump writes)."""
    assert pcap[:4] == bytes.fromhex("d4c3b2a1"), "not a little-endian pcap"
    assert struct.unpack_from("<I", pcap, 20)[0] == 1, "not Ethernet"
    sources, at = [], 24
    while at + 16 <= len(pcap):
        included = struct.unpack_from("<I", pcap, at + 8)[0]
        frame = pcap[at + 16:at + 16 + included]
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
            sources.append(str(ipaddress.IPv4Address(frame[26:30])))
        at += 16 + included
    return sources


@pytest.fixture(scope="module")
def evidence_pass(tmp_path_factory):
    engine_or_skip()
    out = tmp_path_factory.mktemp("evidence")
    result = submit(out, "--test-filter", f"{PASSING}|{FAILING}", *NAT, "--timeout", "40",
                    timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = yaml.safe_load((out / "results.yaml").read_text())
    return out, {test["name"]: test for test in results["tests"]}, results


def test_a_failed_test_keeps_the_capture_of_each_routers_public_side(evidence_pass) -> None:
    out, tests, _ = evidence_pass
    failed = tests[FAILING]
    assert failed["status"] == "fail" and failed["expectedFailure"] is True
    stem = "go-v0.51_x_go-v0.51_quic_symmetric_x_symmetric"
    assert f"captures/{stem}.dialer_router.pcap" in failed["captures"]
    assert f"captures/{stem}.listener_router.pcap" in failed["captures"]
    log = (out / failed["logFile"]).read_text()
    for router in ("dialer_router", "listener_router"):
        public = re.search(rf"^{router}\s*\| router: public \S+ (\S+) ", log, re.M).group(1)
        pcap = (out / f"captures/{stem}.{router}.pcap").read_bytes()
        sources = ipv4_sources(pcap)
        # the router's own NATed traffic out of its public side, and the peers' replies
        assert sources.count(public) >= 3, (router, public, sorted(set(sources)))
        assert any(source != public for source in sources)
    # the go dialer's QUIC secrets (its connection to the relay): the capture can be decrypted
    keys = (out / f"captures/{stem}.dialer.keys").read_text()
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keys and "CLIENT_TRAFFIC_SECRET_0" in keys
    # the go dialer got its relayed connection; the step it stopped at comes after it
    assert failed["failedStep"] in FAILED_STEPS[FAILED_STEPS.index("dcutr-started"):]
    summary = (out / "results.md").read_text()
    assert "## Failures" in summary and f"`captures/{stem}.dialer_router.pcap`" in summary


def test_the_test_pass_zip_bundles_the_captures(evidence_pass) -> None:
    out, tests, results = evidence_pass
    zip_path = Path.home() / ".cache" / "holepunch" / "test-passes" / \
        f"{results['metadata']['testPass']}.zip"
    with zipfile.ZipFile(zip_path) as archive:
        top = f"{results['metadata']['testPass']}/"
        for name in tests[FAILING]["captures"]:
            assert archive.read(top + name) == (out / name).read_bytes()


def test_a_passing_go_test_reports_its_time_to_direct_and_the_median_of_its_samples(
        evidence_pass) -> None:
    _, tests, _ = evidence_pass
    passed = tests[PASSING]
    assert passed["status"] == "pass"
    samples = passed["rttSamplesMs"]
    assert len(samples) >= MIN_RTT_SAMPLES
    assert passed["rttMs"] == round(median(samples))
    assert 0 < passed["timeToDirectMs"] < 60_000
    assert "captures" not in passed and "failedStep" not in passed  # kept for failures only
