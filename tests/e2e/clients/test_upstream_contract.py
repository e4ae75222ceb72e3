"""The upstream client contract end to end: an image made for libp2p/test-plans, run unmodified,
hole punches against one of ours (real routers, relay, Redis and py-libp2p on this engine).

The upstream-contract image here is a test fake, built from our py-libp2p client image the way
upstream's images are shaped: no ENTRYPOINT, a base image's shell as CMD (alpine's /bin/sh
upstream), `hole-punch-client` on the PATH, Redis at `redis:6379` hard-coded, bare keys. It
refuses to run if the harness hands it anything of our contract (TEST_KEY, REDIS_ADDR).

Run: `flock /tmp/holepunch-e2e.lock .venv/bin/python -m pytest tests/e2e/clients/test_upstream_contract.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import worker.contracts as contracts
from tests.e2e.clients.harness import PairResult

MIN_RTT_MS = 180.0  # four 50 ms router delays (test_hole_punch.py)
NEGATIVE_TIMEOUT_S = 30.0

FAKE_CLIENT = """\
#!/bin/sh
# FAKE upstream-contract client (tests only): what upstream's clients hard-code, around our
# py-libp2p client: Redis at redis:6379 and bare keys (no TEST_KEY).
if [ -n "${TEST_KEY:-}${REDIS_ADDR:-}${ROUTER_ADDR:-}" ]; then
    echo "fake upstream client: the harness gave our contract's variables" >&2
    exit 3
fi
REDIS_ADDR=redis:6379 exec python3 /opt/holepunch/hole_punch_client.py
"""


@pytest.fixture(scope="module")
def fake_upstream_image(docker_client, built, tmp_path_factory):
    python = built("python")
    context: Path = tmp_path_factory.mktemp("fake-upstream")
    (context / "hole-punch-client").write_text(FAKE_CLIENT)
    (context / "hole-punch-client").chmod(0o755)
    (context / "Dockerfile").write_text(
        f"FROM sha256:{python.image_id}\n"
        "ENTRYPOINT []\n"
        'CMD ["/bin/sh"]\n'
        "COPY hole-punch-client /usr/bin/hole-punch-client\n")
    image, _ = docker_client.images.build(path=str(context), rm=True, tag="holepunch-test-fake-upstream",
                                          labels={"holepunch.owner": "tests"})
    config = image.attrs["Config"]
    assert not config.get("Entrypoint") and config.get("Cmd") == ["/bin/sh"]
    yield image.id.removeprefix("sha256:"), python
    docker_client.images.remove("holepunch-test-fake-upstream", force=True)


def _explain(result: PairResult) -> str:
    return (f"{result.summary()}\n--- dialer stdout ---\n{result.dialer_stdout[-2000:]}\n"
            f"--- dialer stderr ---\n{result.dialer_stderr[-3000:]}\n--- log ---\n{result.log[-5000:]}")


def _pair(run_pair, pair_results, name, dialer, listener, **opts) -> PairResult:
    result = run_pair(dialer, listener, "tcp", test_name=name, **opts)
    pair_results.append((name, result))
    assert result.leftovers == [], f"{name} left {result.leftovers}"
    return result


@pytest.mark.parametrize("upstream_side", ["dialer", "listener"])
def test_an_upstream_image_hole_punches_against_ours(fake_upstream_image, run_pair, pair_results,
                                                     upstream_side):
    fake, python = fake_upstream_image
    if upstream_side == "dialer":
        name, dialer, listener = "fake-upstream x python-v0.8 (tcp)", fake, python.image_id
    else:
        name, dialer, listener = "python-v0.8 x fake-upstream (tcp)", python.image_id, fake
    result = _pair(run_pair, pair_results, name, dialer, listener,
                   **{f"{upstream_side}_contract": "upstream"})
    assert result.passed, _explain(result)
    assert result.exit_code == 0 and result.rtt_ms >= MIN_RTT_MS, _explain(result)
    # its redis was the test's proxy, reached over the LAN, with bare keys
    assert "BLPOP RELAY_TCP_ADDRESS" in result.log, result.log  # logged by the proxy


def test_two_upstream_images_share_the_proxy(fake_upstream_image, run_pair, pair_results):
    fake, _ = fake_upstream_image
    result = _pair(run_pair, pair_results, "fake-upstream x fake-upstream (tcp)", fake, fake,
                   dialer_contract="upstream", listener_contract="upstream")
    assert result.passed and result.rtt_ms >= MIN_RTT_MS, _explain(result)


def test_ours_against_ours_for_comparison(fake_upstream_image, run_pair, pair_results):
    """The same pair under our contract (its up/run/down beside the upstream runs above)."""
    _, python = fake_upstream_image
    result = _pair(run_pair, pair_results, "python-v0.8 x python-v0.8 (tcp)", python.image_id,
                   python.image_id)
    assert result.passed, _explain(result)


def test_our_images_routed_by_holders_pass_too(fake_upstream_image, run_pair, pair_results):
    """Our clients in a holder's namespace (no NET_ADMIN, no ROUTER_ADDR): the same pair again."""
    _, python = fake_upstream_image
    result = _pair(run_pair, pair_results, "python-v0.8 x python-v0.8 (tcp) held", python.image_id,
                   python.image_id, holders_for_ours=True)
    assert result.passed and result.rtt_ms >= MIN_RTT_MS, _explain(result)


def test_a_proxy_that_maps_to_another_key_space_fails_the_test(fake_upstream_image, run_pair,
                                                               pair_results, monkeypatch):
    fake, python = fake_upstream_image
    proxy = contracts._keyspace_proxy

    def elsewhere(spec, lans, labels):
        service = proxy(spec, lans, labels)
        service["environment"]["KEY_PREFIX"] = "not-this-test:"
        return service
    monkeypatch.setattr(contracts, "_keyspace_proxy", elsewhere)
    result = _pair(run_pair, pair_results, "fake-upstream x python-v0.8 (tcp) wrong key space", fake,
                   python.image_id, dialer_contract="upstream", timeout=NEGATIVE_TIMEOUT_S)
    assert not result.passed, _explain(result)


def test_a_namespace_routed_past_its_router_fails_the_test(fake_upstream_image, run_pair,
                                                           pair_results, monkeypatch):
    fake, python = fake_upstream_image
    holder = contracts._holder

    def misrouted(spec, side, lan, labels):
        service = holder(spec, side, lan, labels)
        router = service["environment"]["ROUTER_ADDR"]
        service["environment"]["ROUTER_ADDR"] = router.rsplit(".", 1)[0] + ".6"  # nobody there
        return service
    monkeypatch.setattr(contracts, "_holder", misrouted)
    result = _pair(run_pair, pair_results, "fake-upstream x python-v0.8 (tcp) misrouted", fake,
                   python.image_id, dialer_contract="upstream", timeout=NEGATIVE_TIMEOUT_S)
    assert not result.passed, _explain(result)
