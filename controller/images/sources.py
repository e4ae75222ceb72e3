"""Identify an implementation's source by content, so snapshots and caches key on what changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cluster.models import Implementation

# Made by builds (impl/README.md), at the top of a folder: never part of its identity.
# `.cargo` holds the config.toml that `make vendor` writes to point cargo at vendor/.
GENERATED_DIRS = frozenset({"vendor", "node_modules", "build", "wheels", "target", ".cargo"})
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache"})  # anywhere
GENERATED_FILES = frozenset({"image.yaml"})


def source_files(folder: Path) -> list[Path]:
    """The files (and symlinks, to files or folders) that make up a source folder, sorted,
    generated output left out."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        top = Path(dirpath) == folder
        kept = sorted(d for d in dirnames if d not in CACHE_DIRS and not (top and d in GENERATED_DIRS))
        links = [d for d in kept if (Path(dirpath) / d).is_symlink()]
        dirnames[:] = [d for d in kept if d not in links]
        for name in sorted([*filenames, *links]):
            if not (top and name in GENERATED_FILES):
                found.append(Path(dirpath) / name)
    return found


def source_digest(folder: Path) -> str:
    """sha256 over each file's relative path, executable bit and content; a symlink counts by
    where it points (as snapshots store it), so none is followed out of the folder."""
    digest = hashlib.sha256(b"holepunch-source-v1\n")
    for path in source_files(folder):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            kind, content = b"l", hashlib.sha256(os.readlink(path).encode("utf-8")).digest()
        else:
            kind = b"x" if os.access(path, os.X_OK) else b"-"
            content = hashlib.sha256(path.read_bytes()).digest()
        digest.update(relative.encode("utf-8") + b"\0" + kind + content)
    return digest.hexdigest()


def snapshot_name(impl: Implementation, root: Path) -> str:
    """`snapshots/<commit>.zip` for github sources (the seed's name), else the source's sha256."""
    if impl.source.type == "github":
        return f"snapshots/{impl.source.commit}.zip"
    return f"snapshots/{source_digest(root / impl.folder)}.zip"
