"""Remove what tests left behind on this host, found by label (a crashed run, a killed task)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import docker
from docker.errors import APIError, NotFound

from cluster.labels import HOST, OWNER, OWNER_VALUE, ROLE


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
