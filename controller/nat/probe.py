"""Run the NAT probe for one preset on the local engine and classify what it saw.

Everything it starts (internal probe internet, LAN, carrier network, server, routers, client) is
labelled with its run id, host and pid (cluster/labels.py) and removed at the end, also on Ctrl-C
or SIGTERM; what a killed run left, the next run on this host removes.
The client only sends to the probe server's two addresses on the internal probe internet, so no
packet can leave the machine even before its default route points at its router.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from cluster.errors import InfrastructureError
from cluster.labels import HOST, OWNER, PROBE, PROBE_OWNER_VALUE, PROBE_PID, probe_labels
from cluster.lifetime import pid_alive
from cluster.nat import (
    PEER_DELAY_MS,
    Behaviour,
    Preset,
    ProbeFailed,
    ProbeObservation,
    behaviour_report,
    classify,
)
from controller.nat.topology import (
    CARRIER_POOL,
    INET_POOL,
    LAN_POOL,
    ContainerPlan,
    Topology,
    free_subnet,
    plan,
)

ROUTER_TAG = "holepunch-router"
READY_FILE = "/tmp/setup-done"
START_TIMEOUT_S = 30
CLIENT_TIMEOUT_S = 90

Log = Callable[[str], None]


@dataclass(frozen=True)
class ProbeResult:
    preset: Preset
    udp: Behaviour
    tcp: Behaviour
    observation: ProbeObservation

    def report(self) -> dict[str, Any]:
        return {"preset": self.preset.name, "udp": behaviour_report(self.udp),
                "tcp": behaviour_report(self.tcp)}

    def yaml(self) -> str:
        return yaml.safe_dump(self.report(), sort_keys=False)


def router_image(client, root: Path) -> str:
    """router/image.yaml's image when the engine has it, else the tag holepunch-router."""
    import docker.errors

    candidates = []
    image_yaml = root / "router" / "image.yaml"
    if image_yaml.is_file():
        image_id = (yaml.safe_load(image_yaml.read_text()) or {}).get("imageID")
        if image_id:
            candidates.append(f"sha256:{image_id}")
    candidates.append(ROUTER_TAG)
    for ref in candidates:
        try:
            return client.images.get(ref).id
        except docker.errors.ImageNotFound:
            continue
    raise InfrastructureError(f"no router image ({image_yaml} or tag {ROUTER_TAG}): run "
                              f"`holepunch-controller build` first")


def run_probe(preset: Preset, root: Path, log: Log = lambda line: None,
              image: str | None = None) -> ProbeResult:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except DockerException as err:
        raise InfrastructureError(f"no Docker engine: {err}") from err
    image = image or router_image(client, root)
    for stale in stale_runs(_probe_resource_labels(client), socket.gethostname(), pid_alive):
        log(f"nat-probe: removing the leftovers of run {stale} (its process is gone)")
        remove_run(client, stale)
    run_id = secrets.token_hex(4)
    with _terminate_as_interrupt(), _cleanup(client, run_id, log):
        topology = _layout(client, preset)
        log(f"nat-probe {run_id}: {preset.name}, internet {topology.networks[-1].subnet}, "
            f"lan {topology.networks[0].subnet}")
        output = _run(client, image, run_id, topology, log)
    try:
        observation = ProbeObservation.model_validate(json.loads(output))
        log(f"nat-probe {run_id}: UDP round trip to the server {observation.udp.rtt_ms} ms "
            f"(one peer's half of the {4 * PEER_DELAY_MS} ms direct RTT: {2 * PEER_DELAY_MS} ms)")
        return ProbeResult(preset, classify(observation.udp), classify(observation.tcp), observation)
    except (ValueError, ProbeFailed) as err:
        raise InfrastructureError(f"nat-probe {preset.name}: cannot classify the client's output "
                                  f"({err}): {output[-500:]!r}") from err


def _layout(client, preset: Preset) -> Topology:
    taken = []
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if config.get("Subnet") and ":" not in config["Subnet"]:
                taken.append(config["Subnet"])
    try:
        carrier = free_subnet(CARRIER_POOL, taken) if len(preset.routers) > 1 else None
        return plan(preset, free_subnet(INET_POOL, taken), free_subnet(LAN_POOL, taken), carrier)
    except LookupError as err:
        raise InfrastructureError(f"nat-probe: {err}") from err


def _run(client, image: str, run_id: str, topology: Topology, log: Log) -> str:
    from docker.types import IPAMConfig, IPAMPool

    labels = probe_labels(run_id, socket.gethostname(), os.getpid())
    net_ids = {}
    for net in topology.networks:
        options = {} if net.internal else {"com.docker.network.bridge.enable_ip_masquerade": "false"}
        created = client.networks.create(
            f"hp-natprobe-{run_id}-{net.key}", driver="bridge", internal=net.internal, labels=labels,
            options=options, ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=net.subnet)]))
        net_ids[net.key] = created.id

    server = _start(client, image, run_id, topology.server, net_ids, labels)
    _wait_for(lambda: b"nat-probe server:" in server.logs(), server, "the probe server")
    for router in topology.routers:
        container = _start(client, image, run_id, router, net_ids, labels)
        _wait_for(partial(_has_file, container, READY_FILE), container, router.key)
    log(f"nat-probe {run_id}: server and {len(topology.routers)} router(s) ready; probing")
    probe = _start(client, image, run_id, topology.client, net_ids, labels)
    status = probe.wait(timeout=CLIENT_TIMEOUT_S)
    stdout = probe.logs(stdout=True, stderr=False).decode(errors="replace")
    if status.get("StatusCode") != 0:
        stderr = probe.logs(stdout=False, stderr=True).decode(errors="replace")
        raise InfrastructureError(f"nat-probe client exited {status.get('StatusCode')}: {stderr[-1000:]}")
    return stdout.strip().splitlines()[-1] if stdout.strip() else ""


def _start(client, image: str, run_id: str, spec: ContainerPlan, net_ids: dict[str, str],
           labels: dict[str, str]):
    api = client.api
    first_net, first_ip = spec.networks[0]
    host_config = api.create_host_config(
        init=True, cap_add=["NET_ADMIN", "SYS_NICE"] if spec.router else ["NET_ADMIN"],
        sysctls={"net.ipv4.ip_forward": "1"} if spec.router else None)
    created = api.create_container(
        image, entrypoint=list(spec.command[:1]), command=list(spec.command[1:]),
        environment=spec.environment, labels=labels, name=f"hp-natprobe-{run_id}-{spec.key}",
        host_config=host_config, healthcheck={"test": ["NONE"]},
        networking_config=api.create_networking_config(
            {net_ids[first_net]: api.create_endpoint_config(ipv4_address=first_ip)}))
    for net, ip in spec.networks[1:]:
        api.connect_container_to_network(created["Id"], net_ids[net], ipv4_address=ip)
    api.start(created["Id"])
    return client.containers.get(created["Id"])


def _has_file(container: Any, path: str) -> bool:
    return container.exec_run(["test", "-f", path]).exit_code == 0


def _wait_for(ready: Callable[[], bool], container, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            raise InfrastructureError(f"nat-probe: {what} exited: "
                                      f"{container.logs().decode(errors='replace')[-1500:]}")
        if ready():
            return
        time.sleep(0.2)
    raise InfrastructureError(f"nat-probe: {what} not ready after {START_TIMEOUT_S} s: "
                              f"{container.logs().decode(errors='replace')[-1500:]}")


@contextmanager
def _cleanup(client, run_id: str, log: Log) -> Iterator[None]:
    """Remove what this run started (by its label), however the run ends."""
    try:
        yield
    finally:
        remove_run(client, run_id)
        log(f"nat-probe {run_id}: removed its containers and networks")


def stale_runs(labels: list[dict[str, str]], host: str, alive: Callable[[int], bool]) -> set[str]:
    """Runs of this host whose probe process is gone (a SIGKILL, a crash): safe to remove.
    Another host's runs, or ones without a pid, are left alone."""
    stale = set()
    for item in labels:
        run_id, pid = item.get(PROBE), item.get(PROBE_PID, "")
        if run_id and item.get(HOST) == host and pid.isdigit() and not alive(int(pid)):
            stale.add(run_id)
    return stale


def _probe_resource_labels(client) -> list[dict[str, str]]:
    selector = {"label": [f"{OWNER}={PROBE_OWNER_VALUE}"]}
    return ([c.labels for c in client.containers.list(all=True, filters=selector)]
            + [n.attrs.get("Labels") or {} for n in client.networks.list(filters=selector)])



def remove_run(client, run_id: str) -> None:
    from docker.errors import NotFound

    selector = {"label": [f"{PROBE}={run_id}"]}
    for container in client.containers.list(all=True, filters=selector):
        try:
            container.remove(force=True)
        except NotFound:
            pass
    for network in client.networks.list(filters=selector):
        try:
            network.remove()
        except NotFound:
            pass


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the probe like Ctrl-C does, so the cleanup runs."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
