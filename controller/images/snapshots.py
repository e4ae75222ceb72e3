"""Source snapshots: a zip of an implementation's folder with its vendored dependencies.

A snapshot is named by the sha256 of the folder's own source (controller.images.sources), the way a
github snapshot is named by its commit: the lock files in that source pin the vendored
dependencies it carries. Zips are deterministic (sorted entries, fixed timestamps) and keep
symlinks (node_modules/.bin) and executable bits; a link out of the folder (a version's link to
its language's shared source) is stored as the files it leads to (controller.images.sources).
Vendored crates no build for this platform uses are stored as stubs (controller.images.cargoprune):
the name stays, the zip shrinks.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from cluster.cache import Cache, atomic_write, sha256_file
from cluster.yamlio import dump_yaml
from controller.images.cargoprune import unused_crates
from controller.images.sources import links_out

# Left out of a snapshot: build output only. Vendored dependencies stay in (offline rebuilds).
# Top level only: a vendored crate's own build/ folder is source.
BUILD_OUTPUT_DIRS = frozenset({"build", "target"})
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache"})  # anywhere
BUILD_OUTPUT_FILES = frozenset({"image.yaml"})
_EPOCH = (1980, 1, 1, 0, 0, 0)


def snapshot_entries(folder: Path, skip: frozenset[str] = frozenset()) -> list[Path]:
    """The files (and symlinks) a snapshot of `folder` holds; `skip`: folders (relative
    paths) left out entirely."""
    entries: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        keep = []
        for name in sorted(dirnames):
            path = Path(dirpath) / name
            if name in CACHE_DIRS or (name in BUILD_OUTPUT_DIRS and Path(dirpath) == folder):
                continue
            if path.relative_to(folder).as_posix() in skip:
                continue
            if path.is_symlink() and not links_out(path, folder):
                entries.append(path)  # a symlinked folder is stored as a link, not walked
            else:
                keep.append(name)
        dirnames[:] = keep
        entries.extend(Path(dirpath) / name for name in sorted(filenames)
                       if not (name in BUILD_OUTPUT_FILES and Path(dirpath) == folder))
    return sorted(entries, key=lambda p: p.relative_to(folder).as_posix())


# An entry of a snapshot zip: its name, its st_mode (a link or a file; only the executable bit
# of a file counts) and its content (a link's target), as bytes or a readable stream.
Entry = tuple[str, int, "bytes | IO[bytes]"]


def write_entries(target: Path, entries: Iterable[Entry]) -> None:
    """The snapshot zip of `entries`, in the order given: the one writer of snapshot zips, so
    that a zip written again from the same entries (controller.images.solid) is the same bytes."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, mode, content in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3  # unix, so external_attr carries the mode
            if stat.S_ISLNK(mode):
                assert isinstance(content, bytes)  # a link's content is its target
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, content, compress_type=zipfile.ZIP_STORED)
                continue
            info.external_attr = (stat.S_IFREG | (0o755 if mode & 0o111 else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as dst:
                if isinstance(content, bytes):
                    dst.write(content)
                else:
                    shutil.copyfileobj(content, dst, 1 << 20)


def is_ours(archive: zipfile.ZipFile) -> bool:
    """Whether write_entries wrote this zip (so writing its entries again gives it back): unix
    entries at the fixed time, files and links only. A GitHub archive is not."""
    return all(info.create_system == 3 and info.date_time == _EPOCH and not info.is_dir()
               for info in archive.infolist())


def _folder_entries(folder: Path, stubs: dict[str, dict[str, bytes]]) -> Iterator[Entry]:
    stubbed = {f"{top}/{inner}": data for top, files in stubs.items() for inner, data in files.items()}
    entries: list[tuple[str, Path | bytes]] = [
        (path.relative_to(folder).as_posix(), path)
        for path in snapshot_entries(folder, frozenset(stubs))]
    for name, source in sorted([*entries, *stubbed.items()], key=lambda entry: entry[0]):
        if isinstance(source, bytes):
            yield name, stat.S_IFREG | 0o644, source
            continue
        mode = source.stat().st_mode if links_out(source, folder) else source.lstat().st_mode
        if stat.S_ISLNK(mode):
            yield name, mode, os.readlink(source).encode("utf-8")
            continue
        with source.open("rb") as stream:
            yield name, mode, stream


def write_zip(folder: Path, target: Path,
              stubs: dict[str, dict[str, bytes]] | None = None) -> None:
    """Zip `folder` into `target` (written atomically by the caller's rename); each folder
    named in `stubs` is replaced by the files given for it (controller.images.cargoprune)."""
    write_entries(target, _folder_entries(folder, stubs or {}))


def extract_zip(archive_path: Path, target: Path) -> None:
    """Unpack a snapshot into an empty `target`, restoring symlinks and executable bits.

    Every file gets the same modification time: a snapshot is one consistent tree, and make
    must not take a file that merely came out of the zip later (package.json sorts after
    node_modules/) as newer than what was made from it (npm's install stamp).
    """
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    root = target.resolve()
    unpacked_at = time.time()
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            dest = (target / info.filename).resolve()
            if root not in dest.parents and dest != root:
                raise ValueError(f"{archive_path}: entry {info.filename!r} escapes the folder")
            mode = info.external_attr >> 16
            dest.parent.mkdir(parents=True, exist_ok=True)
            if info.is_dir():
                dest.mkdir(exist_ok=True)
            elif stat.S_ISLNK(mode):
                os.symlink(archive.read(info).decode("utf-8"), dest)
            else:
                with archive.open(info) as src, dest.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.chmod(dest, 0o755 if mode & 0o111 else 0o644)
                os.utime(dest, (unpacked_at, unpacked_at))


def store_snapshot(folder: Path, name: str, cache: Cache, origin: str) -> Path:
    """Zip `folder` as `snapshots/<name>.zip` with its `.metadata`, unless already there."""
    target = cache.folder("snapshots") / f"{name}.zip"
    if target.is_file():
        return target
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".snapshot.", suffix=".tmp",
                                     delete=False) as handle:
        tmp = Path(handle.name)
    try:
        stubs = unused_crates(folder)
        write_zip(folder, tmp, stubs)
        metadata = {"source": origin, "sourceDigest": name, "stubbedCrates": len(stubs),
                    "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "size": tmp.stat().st_size, "sha256": sha256_file(tmp)}
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    atomic_write(target.with_name(target.name + ".metadata"), dump_yaml(metadata))
    return target
