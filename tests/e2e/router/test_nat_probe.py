"""Each NAT preset proven without libp2p: the RFC 5780-style probe behind a real router of that
preset must observe exactly the preset's definition, over UDP and over TCP.

Run: `flock /tmp/holepunch-e2e.lock .venv/bin/python -m pytest tests/e2e/router/test_nat_probe.py -v`
(Docker engine, the router image built).
"""

from __future__ import annotations

import pytest
import yaml

from cluster.labels import PROBE
from cluster.nat import PEER_DELAY_MS, PRESETS, behaviour_report
from controller.cli import main
from controller.nat.probe import run_probe
from tests.e2e.clients.harness import REPO, image_yaml_id, present_image


@pytest.fixture(scope="module")
def router_image(docker_client):
    image = (present_image(docker_client, image_yaml_id(REPO / "router"))
             or present_image(docker_client, "holepunch-router"))
    if not image:
        pytest.skip("router image is not built (router/image.yaml or tag holepunch-router)")
    return image


@pytest.mark.parametrize("name", list(PRESETS))
def test_probe_observes_the_preset_definition(docker_client, router_image, name):
    preset = PRESETS[name]
    result = run_probe(preset, REPO, image=router_image)
    print(f"\n[nat-probe] {name}: {result.report()} udp rtt {result.observation.udp.rtt_ms} ms")
    expected = behaviour_report(preset.behaviour)
    assert result.report() == {"preset": name, "udp": expected, "tcp": expected}, (
        f"{name}: observed {result.observation.model_dump(by_alias=True)}")
    # the latency model holds for every preset (cgnat: two routers of 25 ms): a peer's share of
    # the 200 ms direct RTT is 100 ms; no upper bound (a loaded host only adds)
    assert result.observation.udp.rtt_ms >= 2 * PEER_DELAY_MS - 5, result.observation.udp
    left = docker_client.containers.list(all=True, filters={"label": [PROBE]}) + \
        docker_client.networks.list(filters={"label": [PROBE]})
    assert left == [], f"the probe left {left}"


def test_cli_prints_the_yaml(router_image, capsys):
    code = main(["nat-probe", "symmetric", "--root", str(REPO)])
    out = capsys.readouterr().out
    assert code == 0
    assert yaml.safe_load(out) == {"preset": "symmetric",
                                   "udp": behaviour_report(PRESETS["symmetric"].behaviour),
                                   "tcp": behaviour_report(PRESETS["symmetric"].behaviour)}
