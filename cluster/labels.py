"""The labels on every container and network we start, so a crashed run can be found and removed."""

from __future__ import annotations

OWNER = "holepunch.owner"      # "worker" for all a worker starts
ROLE = "holepunch.role"        # "global" (network, Redis, relay) or "test" (a test's project)
HOST = "holepunch.host"        # the worker host's name
PASS = "holepunch.pass"        # set by worker.compose on a test's containers and networks
TEST = "holepunch.test"

OWNER_VALUE = "worker"


def global_labels(host: str) -> dict[str, str]:
    return {OWNER: OWNER_VALUE, ROLE: "global", HOST: host}


def test_labels(host: str) -> dict[str, str]:
    return {OWNER: OWNER_VALUE, ROLE: "test", HOST: host}



PROBE = "holepunch.probe"      # the run id of a `nat-probe` (its own networks and containers)
PROBE_PID = "holepunch.probe.pid"  # the probe's process, on HOST: a dead one's run is removed
PROBE_OWNER_VALUE = "nat-probe"


def probe_labels(run_id: str, host: str, pid: int) -> dict[str, str]:
    return {OWNER: PROBE_OWNER_VALUE, ROLE: "probe", PROBE: run_id, HOST: host, PROBE_PID: str(pid)}
