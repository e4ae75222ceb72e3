"""The secure channel and muxer of a tcp test reach the clients and are what they negotiate.

A tcp test named `(tcp, tls, yamux)` passes SECURE_CHANNEL=tls and MUXER=yamux to both clients
(worker.compose). Passing is not enough: a client that ignored SECURE_CHANNEL would still punch
over noise. So each test reads what the direct connection negotiated from a client's own log:
go-libp2p logs every connection's security and muxer protocol ids, py-libp2p's dialer the
classes of its direct connection's muxer and secure stream. A client must refuse, exit 1 with a
clear line on stderr, a value it does not support.

Run: `flock /tmp/holepunch-e2e.lock .venv/bin/python -m pytest tests/e2e/clients/test_secure_channels.py`
"""

from __future__ import annotations

import re
import uuid

import pytest

from cluster import labels
from tests.e2e.clients.harness import E2E_HOST, PairResult
from tests.e2e.clients.test_hole_punch import MIN_RTT_MS, _explain, reported_direct

TLS = "/tls/1.0.0"
NOISE = "/noise"


def go_direct_security(log: str) -> list[str]:
    """The security protocol of each direct (not /p2p-circuit) connection between the peers, as
    the go client logs it: its dialer's `direct connection: ... (security X, ...)` line and
    its listener's `connection from <peer> via <addr> (..., security X, ...)` lines."""
    found = []
    for line in log.splitlines():
        if "/p2p-circuit" in line or not re.search(r"direct connection: |connection from ", line):
            continue
        match = re.search(r"security (\S+?),", line)
        if match:
            found.append(match.group(1))
    return found


def _run_cell(built, run_pair, pair_results, dialer_lang: str, listener_lang: str,
              secure_channel: str, muxer: str) -> PairResult:
    """One tcp cell as the matrix names and the worker runs it."""
    dialer, listener = built(dialer_lang), built(listener_lang)
    name = f"{dialer.name} x {listener.name} (tcp, {secure_channel}, {muxer})"
    result = run_pair(dialer.image_id, listener.image_id, "tcp", test_name=name,
                      secure_channel=secure_channel, muxer=muxer)
    pair_results.append((name, result))
    assert result.leftovers == [], f"{name} left {result.leftovers}"
    return result


def _passes(result: PairResult) -> None:
    assert result.exit_code == 0 and result.rtt_ms is not None, _explain(result)
    assert result.rtt_ms >= MIN_RTT_MS, _explain(result)
    assert reported_direct(result.dialer_stderr), _explain(result)


@pytest.mark.parametrize("dialer_lang, listener_lang", [("rust", "go"), ("go", "rust")])
def test_tls_cell_punches_over_tls(built, run_pair, pair_results, dialer_lang, listener_lang):
    result = _run_cell(built, run_pair, pair_results, dialer_lang, listener_lang, "tls", "yamux")
    _passes(result)
    security = go_direct_security(result.log)
    assert security and set(security) == {TLS}, (
        f"the direct connection negotiated {security or 'nothing logged'}, not {TLS}\n"
        + _explain(result))


def test_noise_cell_still_punches_over_noise(built, run_pair, pair_results):
    """The default cell: the same check must see noise, so it can tell the two apart."""
    result = _run_cell(built, run_pair, pair_results, "rust", "go", "noise", "yamux")
    _passes(result)
    security = go_direct_security(result.log)
    assert security and all(s.startswith(NOISE) for s in security), _explain(result)


@pytest.mark.parametrize("secure_channel, muxer, negotiated", [("noise", "mplex", "muxer Mplex")])
def test_python_cells_negotiate_what_they_name(built, run_pair, pair_results, secure_channel,
                                               muxer, negotiated):
    """py-libp2p 0.8 still ships mplex (go-libp2p and rust-libp2p's facade no longer do); its
    dialer logs the classes its direct connection ended up with."""
    result = _run_cell(built, run_pair, pair_results, "python", "python", secure_channel, muxer)
    _passes(result)
    direct = [line for line in reported_direct(result.dialer_stderr) if "muxer " in line]
    assert direct and all(negotiated in line for line in direct), _explain(result)


@pytest.mark.parametrize("lang, env, refused", [
    ("rust", {"MUXER": "mplex"}, "MUXER"),
    ("rust", {"SECURE_CHANNEL": "plaintext"}, "SECURE_CHANNEL"),
    ("go", {"MUXER": "mplex"}, "MUXER"),
    ("go", {"SECURE_CHANNEL": "plaintext"}, "SECURE_CHANNEL"),
    ("python", {"SECURE_CHANNEL": "tls"}, "SECURE_CHANNEL"),
    ("js", {"SECURE_CHANNEL": "tls"}, "SECURE_CHANNEL"),
])
def test_a_client_refuses_what_it_does_not_support(docker_client, built, lang, env, refused):
    """Before it touches the network: exit 1 and one stderr line naming the variable."""
    impl = built(lang)
    container = docker_client.containers.run(
        f"sha256:{impl.image_id}", detach=True, network_mode="none",
        name=f"hp-e2e-refuse-{uuid.uuid4().hex[:8]}", labels=labels.test_labels(E2E_HOST),
        environment={"MODE": "dial", "TRANSPORT": "tcp", "REDIS_ADDR": "11.11.0.10:6379",
                     "TEST_KEY": "refuse", **env})
    try:
        status = container.wait(timeout=60)["StatusCode"]
        stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status == 1, f"{impl.name} exited {status} on {env}\n{stderr}"
    assert re.search(rf"{refused}\W.*not supported", stderr), f"{impl.name}: {stderr}"
