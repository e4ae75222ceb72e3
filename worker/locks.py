"""Host-wide locks between the worker's task processes (prefork children share nothing else)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_DIR_ENV = "HOLEPUNCH_RUN_DIR"


def run_dir() -> Path:
    """Per-host state (locks, subnet leases): local to this Docker host, never shared."""
    path = Path(os.environ.get(LOCK_DIR_ENV, "/run/holepunch" if os.access("/run", os.W_OK)
                               else f"/tmp/holepunch-{os.getuid()}"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def host_lock(name: str) -> Iterator[None]:
    """An exclusive flock on run_dir()/<name>.lock; released when the holder exits, even by kill."""
    path = run_dir() / f"{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
