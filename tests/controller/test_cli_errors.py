"""Faults of the machine end in a message and exit 3, never a traceback."""

from __future__ import annotations

import errno
from pathlib import Path

from cluster.errors import EXIT_INFRASTRUCTURE


def test_a_full_disk_is_an_infrastructure_fault(repo: Path, run_cli, monkeypatch) -> None:
    def full_disk(*_args, **_kwargs):  # fake: the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("controller.plan.matrix.atomic_write", full_disk)
    code, _, stderr = run_cli("matrix", "--root", str(repo), "-o", "-")
    assert code == EXIT_INFRASTRUCTURE
    assert "error: no space left on device: free some where the cache is" in stderr
    assert "Traceback" not in stderr

