"""What a pass records about the machine that submitted it: the Docker engine, the host, git.

The edge where `submit` and a re-run ask the engine and git; settings.yaml is written from what
these return.
"""

from __future__ import annotations

import platform
import socket
import subprocess
from pathlib import Path

from cluster.errors import InfrastructureError
from cluster.models import GitInfo


def engine_version() -> str:
    """The engine's server version; no engine is an infrastructure fault (exit 3)."""
    result = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InfrastructureError("the Docker engine is not reachable (is dockerd running? "
                                  "bash .ci/setup starts it): " + result.stderr.strip()[-300:])
    return result.stdout.strip()


def _git(root: Path, *args: str) -> str | None:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                            check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def git_info(root: Path) -> GitInfo:
    """The checkout `root` is in (every field None outside one, as in an unzipped test pass)."""
    return GitInfo(repository=_git(root, "remote", "get-url", "origin"),
                   branch=_git(root, "rev-parse", "--abbrev-ref", "HEAD"),
                   commit=_git(root, "rev-parse", "HEAD"),
                   dirty_working_tree=bool(_git(root, "status", "--porcelain")))


def system_info(engine: str) -> dict[str, str | None]:
    """settings.yaml's `system`. `dockerCompose` stays in the seed's shape but is null: workers
    run each test's compose file through the engine's API (worker.project), not docker-compose."""
    return {"platform": platform.machine(), "os": platform.system(),
            "osVersion": platform.platform(), "docker": engine, "dockerCompose": None,
            "python": platform.python_version(), "controllerHost": socket.gethostname()}
