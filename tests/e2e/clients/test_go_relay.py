"""Hole punches through the go relay (go-relay/), as a pass plans and runs them: the matrix of
`--relay go`, the run requests of controller.run.pass_plan (each with its relay's image), and the
worker's own run_test on this engine, with real go-libp2p and rust-libp2p clients behind real NAT
routers, the go relay on the simulated internet beside the session's rust one.

The go relay's identify must tell each client behind its NAT router the router's public
address (the listener logs it). What says the go relay carried the test, not the rust one: every
client learnt the go relay's peer id (the address it published to its own Redis) and never the
rust relay's, and the go relay container (image holepunch-go-relay) logged the tests'
reservations and circuits.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from cluster.cache import Cache
from cluster.labels import ROLE, SERVICES
from cluster.models import GitInfo, Relay, Status
from controller.plan.matrix import plan_matrix
from controller.run.pass_plan import SubmitOptions, plan_pass, relays_of, requests_for
from controller.run.where import EmbeddedDefault
from tests.e2e.clients.harness import REPO, Session
from tests.e2e.worker.harness import built_image
from worker.runner import run_test
from worker.services import set_key

# go x rust over both transports, and rust x rust: all through the go relay
FILTER = "go-v0.51 x rust-v0.57 (|rust-v0.57 x rust-v0.57 (tcp"
IGNORE = "(tcp, tls,|, mplex)"
GIT = GitInfo(repository="origin", branch="main", commit="c" * 40, dirty_working_tree=False)


def _peer_id(addr: str) -> str:
    return addr.rsplit("/p2p/", 1)[1]


def test_real_hole_punches_through_the_go_relay(global_services: Session, docker_client,
                                                 tmp_path: Path, pair_results) -> None:
    images = {key: built_image(folder) for key, folder in (
        ("base", "impl/base"), ("router", "router"), ("rust-relay", "rust-relay"),
        ("go-relay", "go-relay"), ("go-v0.51", "impl/go/v0.51"),
        ("rust-v0.57", "impl/rust/v0.57"))}
    matrix = plan_matrix(REPO, "full", FILTER, IGNORE, Cache(tmp_path / "cache"),
                         cli_relay="go").matrix
    assert relays_of(matrix) == [Relay.GO]
    assert sorted(t.name for t in matrix.tests) == [
        "go-v0.51 x rust-v0.57 (quic) [relay go]",
        "go-v0.51 x rust-v0.57 (tcp, noise, yamux) [relay go]",
        "rust-v0.57 x rust-v0.57 (tcp, noise, yamux) [relay go]"]
    plan = plan_pass(SubmitOptions(root=REPO), EmbeddedDefault(None, 120), "full", "e2e", matrix,
                     images, "e2e", GIT, REPO / "impl" / "base")
    host = global_services.host
    rust_relay_id = _peer_id(global_services.services.relay_addrs["tcp"])

    requests = requests_for(plan, "e2e-go-relay")
    assert {r.relay.image_id for r in requests} == {images["go-relay"].image_id}
    outputs = [run_test(request, host) for request in requests]

    go = host.services.ensure(images["base"].image_id, images["go-relay"].image_id)
    go_relay_id = _peer_id(go.relay_addrs["tcp"])
    rust = global_services.services
    assert go.key != rust.key and go_relay_id != rust_relay_id
    assert {go.redis_ip, go.relay_ip}.isdisjoint({rust.redis_ip, rust.relay_ip})
    assert _peer_id(go.relay_addrs["quic"]) == go_relay_id
    for output in outputs:
        record = output.record
        assert record.status is Status.PASS, f"{record.name}: {record.reason}\n{output.log[-4000:]}"
        assert record.relay is Relay.GO and record.rtt_ms is not None and record.rtt_ms >= 180
        # identify: the go relay told the listener (rust-v0.57 in every test here) the address
        # it saw, its NAT router's public one on the simulated internet, not its LAN address
        observed = re.search(r"the relay observed us at observed=/ip4/(\S+?)/", output.log)
        assert observed and ipaddress.ip_address(observed[1]) in ipaddress.ip_network(
            host.public_subnet), f"{record.name}: no public observed address"
        met_go, met_rust = go_relay_id in output.log, rust_relay_id in output.log
        assert met_go, f"{record.name}: no client met the go relay ({go_relay_id})"
        assert not met_rust, f"{record.name}: a client met the rust relay ({rust_relay_id})"
        print(f"\n[go relay] {record.name}: {record.rtt_ms} ms "
              f"(samples {record.rtt_samples_ms}, direct after {record.time_to_direct_ms} ms)")

    [relay] = docker_client.containers.list(filters={"label": [f"{SERVICES}={go.key}",
                                                               f"{ROLE}=global"],
                                                     "name": "hole-punch-relay-"})
    assert relay.image.id == f"sha256:{images['go-relay'].image_id}"
    assert relay.image.labels.get("holepunch.component") == "go-relay"
    assert go.key == set_key(images["base"].image_id, images["go-relay"].image_id)
    log = relay.logs().decode(errors="replace")
    assert "relay ready" in log
    assert log.count("reservation accepted") >= len(outputs), log[-3000:]
    assert log.count("circuit accepted") >= len(outputs), log[-3000:]


@pytest.fixture(autouse=True)
def _needs_the_go_relay() -> None:
    if not (REPO / "go-relay" / "image.yaml").is_file():
        pytest.skip("go-relay is not built: holepunch-controller build --relay go go-v0.51")
