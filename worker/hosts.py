"""Which worker hosts on this engine are alive: a registry of live hosts, and whose process made
a container.

Several worker hosts may share one engine: two embedded `submit`s (two CI jobs on one runner), an
embedded `submit` beside a long-running worker. Each labels what it starts with its own name and
its process (`owner()`), and registers itself in the run directory while it runs. So a start-up
clean-up removes only what a dead process left (never a live pass's tests), and the shared global
services are removed only by the last live host.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from cluster.labels import HOST_MACHINE, HOST_PID
from cluster.lifetime import pid_alive
from worker.locks import run_dir

PID_ENV = "HOLEPUNCH_HOST_PID"  # the worker's main process, exported to its task processes



@lru_cache(maxsize=1)
def machine() -> str:
    """This boot of this machine, in this pid namespace: where a pid means a process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown-boot"
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "unknown-ns"
    return f"{boot}/{namespace}"


def owner_pid() -> int:
    return int(os.environ.get(PID_ENV) or os.getpid())


def owner() -> tuple[str, str]:
    """(machine, pid) of the worker process that owns what this process starts."""
    return machine(), str(owner_pid())


def abandoned(labels: dict[str, str]) -> bool:
    """True when the labels name a process of this machine that is no longer alive."""
    pid = labels.get(HOST_PID, "")
    return labels.get(HOST_MACHINE) == machine() and pid.isdigit() and not pid_alive(int(pid))


def _registry() -> Path:
    path = run_dir() / "hosts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _file(host: str) -> Path:
    return _registry() / re.sub(r"[^A-Za-z0-9._-]", "_", host)


def register(host: str, pid: int | None = None) -> None:
    """This host is running (until `unregister`, or its process dies)."""
    _file(host).write_text(f"{pid or os.getpid()} {host}\n", encoding="utf-8")


def unregister(host: str) -> None:
    _file(host).unlink(missing_ok=True)


def live_hosts() -> set[str]:
    """The registered hosts whose process still runs; a dead one's entry is removed."""
    alive = set()
    for entry in _registry().iterdir():
        try:
            pid, _, name = entry.read_text(encoding="utf-8").strip().partition(" ")
            live = pid_alive(int(pid))
        except (OSError, ValueError):
            continue
        if live:
            alive.add(name)
        else:
            entry.unlink(missing_ok=True)
    return alive
