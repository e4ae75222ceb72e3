"""Identify an implementation's source by content, so snapshots and caches key on what changed.

A version folder may link to what its language folder shares (`src -> ../src`, `rust.mk ->
../rust.mk`): a link that leads out of the folder but stays inside its parent (impl/<lang>/) is
a shared link, and counts as the files it leads to, in the digest and in the snapshot
(controller.images.snapshots). So a snapshot stays self-contained and a change to the shared
source changes the digest of every version that links to it. Any other link counts by where it
points and is stored as a link, never followed (a hostile link to /etc reads nothing).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cluster.errors import ConfigError
from cluster.models import Implementation

# Made by builds (impl/README.md), at the top of a folder: never part of its identity.
# `.cargo` holds the config.toml that `make vendor` writes to point cargo at vendor/.
GENERATED_DIRS = frozenset({"vendor", "node_modules", "build", "wheels", "target", ".cargo"})
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache"})  # anywhere
GENERATED_FILES = frozenset({"image.yaml"})


def links_out(path: Path, folder: Path) -> bool:
    """Whether `path` is a shared link: a symlink from inside `folder` to a file or folder of
    its parent (the language folder) outside `folder`. One into the parent that leads nowhere
    is a configuration error; a link to a folder holding `folder` (a cycle) is not shared."""
    if not path.is_symlink():
        return False
    root = folder.resolve()
    target = path.resolve()
    if target == root or root in target.parents or target in root.parents:
        return False
    if root.parent not in target.parents:
        return False  # out of the language folder: counted by where it points, not followed
    if not target.exists():
        raise ConfigError(path, "symlink", f"leads to {os.readlink(path)!r}, which does not exist")
    return True


def source_files(folder: Path) -> list[Path]:
    """The files (and symlinks, to files or folders) that make up a source folder, sorted,
    generated output left out; a shared link's folder is walked as if it were here."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        top = here == folder
        kept = sorted(d for d in dirnames if d not in CACHE_DIRS and not (top and d in GENERATED_DIRS))
        links = [d for d in kept if (here / d).is_symlink() and not links_out(here / d, folder)]
        dirnames[:] = [d for d in kept if d not in links]
        for name in sorted([*filenames, *links]):
            if not (top and name in GENERATED_FILES):
                found.append(here / name)
    return found


def source_digest(folder: Path) -> str:
    """sha256 over each file's relative path, executable bit and content; a shared link counts
    as what it leads to, any other symlink by where it points (as snapshots store them)."""
    digest = hashlib.sha256(b"holepunch-source-v1\n")
    for path in source_files(folder):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink() and not links_out(path, folder):
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
