"""rust-libp2p's own hole-punch client (hole-punching-tests), built unmodified from its github
source (impls.yaml `rust-upstream-*`, `contract: upstream`), against our clients.

Skipped unless its image is built: `holepunch-controller build rust-upstream-head` (a
rust-libp2p compile from scratch, about 5.5 minutes of two cores here).
Run: `flock /tmp/holepunch-e2e.lock .venv/bin/python -m pytest tests/e2e/clients/test_upstream_rust.py`.
"""

from __future__ import annotations

import pytest

from tests.e2e.clients.harness import REPO, image_yaml_id, present_image

MIN_RTT_MS = 180.0
UPSTREAM = ["upstream-head"]  # upstream-v0.53 does not compile with this host's Rust (impl/rust/README.md)
OURS = ["rust", "go"]
# Seen here (2026-12-03, 6348a0be): as dialer it exits 1 after 0.5 s, "Error: timed out", at
# "Fetching LISTEN_CLIENT_PEER_ID from redis". Its redis crate (1.x) gives async connections a
# 500 ms response timeout by default, so its blocking BLPOP gives up unless the listener pushed
# its peer id first; with a real Redis the same. An upstream client bug, shown, not hidden.
DIALER_REDIS_TIMEOUT = ("rust-libp2p master's hole-punching-tests: the redis 1.x crate's default "
                        "500 ms response timeout ends its BLPOP of LISTEN_CLIENT_PEER_ID")


@pytest.fixture(scope="module", params=UPSTREAM)
def upstream(request, docker_client):
    image = present_image(docker_client, image_yaml_id(REPO / "impl" / "rust" / request.param))
    if image is None:
        pytest.skip(f"impl/rust/{request.param}: not built (holepunch-controller build rust-{request.param})")
    return f"rust-{request.param}", image


@pytest.mark.parametrize("transport", ["tcp", "quic"])
@pytest.mark.parametrize("ours_lang", OURS)
@pytest.mark.parametrize("upstream_dials", [True, False], ids=["upstream-dials", "upstream-listens"])
def test_upstream_rust_client_against_ours(upstream, built, run_pair, pair_results, ours_lang,
                                           transport, upstream_dials, request):
    name, image = upstream
    ours = built(ours_lang)
    if upstream_dials and name == "rust-upstream-head":
        request.applymarker(pytest.mark.xfail(reason=DIALER_REDIS_TIMEOUT, strict=False))
    if upstream_dials:
        test, pair = f"{name} x {ours.name} ({transport})", (image, ours.image_id)
        contracts = {"dialer_contract": "upstream"}
    else:
        test, pair = f"{ours.name} x {name} ({transport})", (ours.image_id, image)
        contracts = {"listener_contract": "upstream"}
    result = run_pair(*pair, transport, test_name=test, **contracts)
    pair_results.append((test, result))
    assert result.leftovers == []
    assert result.passed and result.rtt_ms >= MIN_RTT_MS, (
        f"{result.summary()}\n--- dialer stderr ---\n{result.dialer_stderr[-3000:]}\n"
        f"--- log ---\n{result.log[-6000:]}")
