"""Warm routers end to end (worker.warmrouters): started in standby while a test runs, adopted by
the next one, which they serve with its own settings, and removed with it.

Real engine, routers and rust clients. The second test asks for a 100 ms delay per router and
direction (the first had 50 ms): its RTT of about 400 ms shows the settings handed over on stdin
are the ones the router applied; a router that kept its defaults would give about 200 ms.
"""

from __future__ import annotations

import pytest

from cluster.labels import HOST, OWNER, OWNER_VALUE
from worker.warmrouters import WARM, WarmRouters

MIN_RTT_MS = 180.0
SLOW_MIN_RTT_MS = 360.0   # four 100 ms delays


def _warm_containers(client, host: str) -> list[dict]:
    return client.api.containers(all=True, filters={"label": [
        f"{OWNER}={OWNER_VALUE}", f"{HOST}={host}", WARM]})


@pytest.mark.parametrize("holders", [False, True], ids=["own-routes", "holders"])
def test_the_next_test_adopts_its_warm_routers_with_its_own_settings(
        global_services, built, run_pair, holders) -> None:
    rust = built("rust")
    client, host = global_services.host.services.client, global_services.host
    warm = WarmRouters()
    try:
        first = run_pair(rust.image_id, rust.image_id, "tcp", warm=warm, holders_for_ours=holders,
                         test_name=f"{rust.name} x {rust.name} (tcp) warm first")
        assert first.passed and first.rtt_ms >= MIN_RTT_MS, first.summary() + first.log[-3000:]
        assert "routers: started before the test" not in first.log  # nothing was warm yet

        # The first test's clients ran, so the next test's routers are (being) started: in
        # standby, no settings, nothing set up.
        cell = warm.take(client, f"sha256:{global_services.router_image}")
        assert cell is not None, "no warm routers after the first test"
        standing = _warm_containers(client, host.name)
        assert sorted(c["Id"] for c in standing) == sorted(cell.ids.values())
        for name in ("dialer_router", "listener_router"):
            attrs = client.api.inspect_container(cell.ids[name])
            assert attrs["State"]["Running"] and attrs["Config"]["OpenStdin"]
            assert "ROUTER_STANDBY=stdin" in attrs["Config"]["Env"]
            assert not any(e.startswith(("DELAY_MS=", "LAN_SUBNET=")) for e in attrs["Config"]["Env"])
            assert b"standby: waiting" in client.api.logs(cell.ids[name])
        assert ({"dialer_netns", "listener_netns"} <= set(cell.ids)) is holders
        warm._cell = cell  # handed back, for the second test to take

        second = run_pair(rust.image_id, rust.image_id, "tcp", warm=warm, delay_ms=100,
                          holders_for_ours=holders,
                          test_name=f"{rust.name} x {rust.name} (tcp) warm second")
        assert second.passed, second.summary() + second.log[-3000:]
        assert "[holepunch] routers: started before the test in standby" in second.log
        assert "router: setting DELAY_MS=100" in second.log
        assert second.rtt_ms >= SLOW_MIN_RTT_MS, (
            f"RTT {second.rtt_ms} ms: the warm routers did not apply the test's 100 ms delay")
        adopted = set(cell.ids.values())
        left = {c["Id"] for c in client.api.containers(all=True)} & adopted
        assert not left, "the adopted routers outlived their test"
    finally:
        warm.close(client)
    assert _warm_containers(client, host.name) == []
