"""Remove what tests left behind on this host, found by label (a crashed run, a killed task)."""

from __future__ import annotations

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
    for container in client.containers.list(all=True, filters=_filters(host, extra)):
        try:
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
        except NotFound:
            pass
    for network in client.networks.list(filters=_filters(host, extra)):
        try:
            network.remove()
            removed.append(f"network {network.name}")
        except (NotFound, APIError):
            pass  # APIError: still in use by a container another reaper is removing
    return removed
