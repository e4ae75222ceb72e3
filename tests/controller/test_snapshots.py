"""Snapshots unpack as one consistent tree: contents, modes, links, and one modification time."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from controller.images.snapshots import extract_zip, write_zip


def test_unpacked_files_share_one_time_so_make_sees_nothing_newer(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "node_modules").mkdir(parents=True)
    # make's view of an npm folder: the install stamp is made from package.json, which sorts
    # after node_modules/ in the zip and so would be unpacked after it
    (source / "node_modules" / ".package-lock.json").write_text("{}")
    (source / "package.json").write_text("{}")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    os.symlink("run.sh", source / "link")
    (source / "Makefile").write_text("node_modules/.package-lock.json: package.json\n"
                                     "\t@echo stale\n")
    archive = tmp_path / "snap.zip"
    write_zip(source, archive)
    target = tmp_path / "out"
    extract_zip(archive, target)
    files = [p for p in target.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len({p.stat().st_mtime_ns for p in files}) == 1
    assert os.access(target / "run.sh", os.X_OK) and os.readlink(target / "link") == "run.sh"
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    stale = subprocess.run(["make", "-q", "-C", str(target), "node_modules/.package-lock.json"],
                           capture_output=True, check=False)
    assert stale.returncode == 0  # up to date: nothing to re-make
