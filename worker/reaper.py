"""Remove what tests left behind, found by label: this host's (a crashed run, a killed task), and
any host's whose worker process is dead (a SIGKILLed embedded `submit`), never a live one's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import docker
import redis
from docker.errors import APIError, NotFound

from cluster.labels import HOST, OWNER, OWNER_VALUE, REDIS_ADDR, ROLE
from worker.hosts import abandoned
from worker.lanpool import reap_lans


def _filters(host: str, extra: list[str] | None = None) -> dict[str, list[str]]:
    return {"label": [f"{OWNER}={OWNER_VALUE}", f"{ROLE}=test", f"{HOST}={host}", *(extra or [])]}


def reap_tests(client: docker.DockerClient, host: str, project: str | None = None) -> list[str]:
    """Remove the test containers and networks of this host (of one compose project if given).

    Returns what was removed, so a caller can tell a clean teardown from a leaky one.
    """
    extra = [f"com.docker.compose.project={project}"] if project else None
    removed: list[str] = []

    def remove(container: dict) -> None:
        try:
            client.api.remove_container(container["Id"], force=True, v=True)
            removed.append(f"container {container['Names'][0].lstrip('/')}")
        except NotFound:
            pass
    # The low-level list: the high-level one inspects every container it lists.
    containers = client.api.containers(all=True, filters=_filters(host, extra))
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(containers)))) as pool:
        list(pool.map(remove, containers))  # in parallel: each is a kill, then a removal

    def remove_network(network: dict) -> None:
        try:
            client.api.remove_network(network["Id"])
            removed.append(f"network {network['Name']}")
        except (NotFound, APIError):
            pass  # APIError: still in use by a container another reaper is removing
    networks = client.api.networks(filters=_filters(host, extra))
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(networks)))) as pool:
        list(pool.map(remove_network, networks))  # in parallel, once their containers are gone
    return removed


PROJECT = "com.docker.compose.project"


def reap_abandoned(client: docker.DockerClient) -> list[str]:
    """Remove the test projects whose worker process is dead (hosts.abandoned), of any host on
    this engine, their keys in their Redis, and the LAN pool networks such a process made; a
    live host's tests and networks stay, whoever it is."""
    containers = client.api.containers(all=True, filters={
        "label": [f"{OWNER}={OWNER_VALUE}", f"{ROLE}=test"]})
    projects = {c["Labels"].get(PROJECT): c["Labels"] for c in containers
                if abandoned(c.get("Labels") or {})}
    for network in client.networks.list(filters={"label": [f"{OWNER}={OWNER_VALUE}",
                                                            f"{ROLE}=test"]}):
        labels = network.attrs.get("Labels") or {}
        if abandoned(labels):
            projects.setdefault(labels.get(PROJECT), labels)
    removed: list[str] = []
    for project, labels in projects.items():
        if not project:
            continue
        removed += reap_tests(client, labels.get(HOST, ""), project=project)
        _forget_keys(labels.get(REDIS_ADDR, ""), project)
    return removed + reap_lans(client)  # the LAN pool networks such a process made


def _forget_keys(redis_addr: str, test_key: str) -> None:
    """A test's keys are `<project>:*` in its service set's Redis (DESIGN.md, TEST_KEY)."""
    host, _, port = redis_addr.rpartition(":")
    if not host or not port.isdigit():
        return
    store = redis.Redis(host=host, port=int(port), socket_timeout=2, socket_connect_timeout=1)
    try:
        for key in store.scan_iter(f"{test_key}:*"):
            store.delete(key)
    except redis.RedisError:
        pass  # that Redis is gone: so are the keys
