"""Real bridges in this kernel holding a subnet of the simulated internet: the worker names them
and stops; `.ci/setup` removes the orphan a killed engine leaves, and only that.

No packet is sent: the bridges are made, checked and deleted. Uses a subnet no test uses."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster.errors import InfrastructureError
from tests.e2e.worker.harness import REPO, docker_or_skip
from worker.routes import check_routes

SUBNET = "11.249.0.0/16"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def make_bridge():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("making bridges needs root and iproute2")
    made: list[str] = []

    def make(name: str, address: str) -> str:
        _ip("link", "add", name, "type", "bridge")
        made.append(name)
        _ip("addr", "add", address, "dev", name)
        _ip("link", "set", name, "up")  # NO-CARRIER, as a dead engine's bridge is
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)


def test_a_dead_engines_bridge_stops_the_worker_until_setup_removes_it(make_bridge) -> None:
    client = docker_or_skip()
    orphan = make_bridge(f"br-{secrets.token_hex(6)}", "11.249.128.0/16")
    hand_made = make_bridge(f"hpstray{os.getpid() % 10000}", "11.249.7.1/24")
    lan_like = make_bridge(f"br-{secrets.token_hex(6)}", "10.249.0.1/24")  # the host never sends there
    with pytest.raises(InfrastructureError, match=f"11.249.0.0/16 is routed through {orphan}"):
        check_routes(client, SUBNET)

    setup = subprocess.run(["bash", str(REPO / ".ci" / "setup")], cwd=REPO, capture_output=True,
                           text=True, check=False)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert f"removing {orphan}" in setup.stdout
    assert not Path("/sys/class/net", orphan).exists()
    assert Path("/sys/class/net", hand_made).exists()  # not Docker's: setup leaves it be
    assert Path("/sys/class/net", lan_like).exists()  # outside the simulated internet's range
    with pytest.raises(InfrastructureError, match=f"11.249.7.0/24 is routed through {hand_made}"):
        check_routes(client, SUBNET)
