"""NAT pairs end to end: `submit --nat` on the embedded default runs go x go over tcp behind
non-default NATs (real routers with the presets' nftables rules, real go-libp2p, the relay,
Redis, Celery), and results.yaml records each test's pair and theory's verdict.

Pairs (dialer x listener): full-cone x symmetric and cgnat x full-cone, where theory says a
punch can work; symmetric x symmetric and cgnat x symmetric, where it says it cannot (no port
prediction), so those must fail, as expected failures; a pass there would mean the routers are
not the NATs they claim.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CONTROLLER = str(Path(sys.executable).with_name("holepunch-controller"))
PAIR = "go-v0.51 x go-v0.51 (tcp, noise, yamux)"
NAT = "full-cone,symmetric,cgnat x full-cone,symmetric"
CAN = {("full-cone", "symmetric"): "one-way", ("cgnat", "full-cone"): "possible"}
CANNOT = {("symmetric", "symmetric"), ("cgnat", "symmetric")}


@pytest.fixture(scope="module")
def nat_pass(tmp_path_factory):
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine")
    out = tmp_path_factory.mktemp("nat-pass")
    pairs = "|".join(f"{PAIR} [{dialer} x {listener}]" for dialer, listener in (*CAN, *CANNOT))
    run = subprocess.run([CONTROLLER, "submit", "--root", str(REPO), "-o", str(out),
                          "--test-filter", pairs, "--nat", NAT, "--timeout", "60", "--workers", "4"],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    return out, run


def test_nat_pairs_punch_where_theory_says_and_are_recorded(nat_pass) -> None:
    out, run = nat_pass
    results = yaml.safe_load((out / "results.yaml").read_text())
    records = {(t["dialerNat"], t["listenerNat"]): t for t in results["tests"]}
    assert sorted(records) == sorted([*CAN, *CANNOT]), run.stderr[-3000:]
    for (dialer_nat, listener_nat), test in records.items():
        assert test["name"] == f"{PAIR} [{dialer_nat} x {listener_nat}]"
        assert test["relay"] == "rust"
    for pair, theory in CAN.items():
        test = records[pair]
        assert test["theory"] == theory
        assert test["status"] == "pass" and test["rttMs"] >= 180, test
        assert not test.get("expectedFailure")
    for pair in CANNOT:
        test = records[pair]
        assert test["theory"] == "impossible"
        assert test["status"] == "fail", f"punched where theory says it cannot: {test}"
        assert test["expectedFailure"] is True
    assert run.returncode == 0, run.stderr[-3000:]  # the impossible cells fail as expected
    md = (out / "results.md").read_text()
    assert "## NAT pairs" in md and "**Better than theory**: 0" in md
    assert "**Worse than theory**: 0" in md


def test_the_routers_ran_the_presets(nat_pass) -> None:
    """The compose file each test ran: the symmetric listener's router maps per destination,
    a cgnat dialer sits behind a home router and a carrier router."""
    out, _ = nat_pass
    results = yaml.safe_load((out / "results.yaml").read_text())
    cache = Path(os.environ.get("HOLEPUNCH_CACHE") or Path.home() / ".cache" / "holepunch")
    for test in results["tests"]:
        compose = yaml.safe_load((cache / test["dockerCompose"]).read_text())
        services = compose["services"]
        listener_env = services["listener_router"]["environment"]
        if test["listenerNat"] == "symmetric":
            assert listener_env["NAT_MAPPING"] == "apdm" and listener_env["NAT_PORTS"] == "random"
        else:
            assert listener_env["NAT_FILTERING"] == "eif"
        if test["dialerNat"] == "cgnat":
            assert "dialer_carrier" in services and "carrier_dialer" in compose["networks"]
            assert services["dialer_router"]["environment"]["DELAY_MS"] == "25"
        else:
            assert "dialer_carrier" not in services
