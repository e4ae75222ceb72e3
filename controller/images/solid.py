"""Solid snapshots: a test-pass zip stores a whole snapshot as one compressed stream, not as its zip.

A zip compresses every entry on its own, and a snapshot is mostly thousands of small source
files (vendored crates, node_modules) that compress far better together: measured on this
project's snapshots, zstd -19 --long over the same entries gave rust-v0.57 18.2 MB instead of
38.4, js-v3.3 35.3 instead of 58.0 (its Node.js binary alone is 125 MB), go-v0.51 4.2 instead
of 7.9; xz behind the x86 filter (controller.images.xz) gives js-v3.3 31.7. So `packed` makes
`snapshots/<name>.tar.xz` once beside the snapshot in the cache (at build time, or on first use:
10-60 s each on two cores), and the test-pass zip stores that in place of `<name>.zip`, or a
delta from another snapshot's tar (controller.images.delta). A pack made another way (an older
recipe) is made again.
`restore_solid`, run by a re-run before anything reads the snapshots,
writes each zip again with the snapshots' own writer (controller.images.snapshots.write_entries):
the same entries in the same order, so with the same zlib the same bytes, checked against the
sha256 its `.metadata` records. Another zlib may compress differently; the entries are still
the very bytes packed, which xz's block checks vouch for.

Only zips that writer made are packed (`is_ours`); any other (a GitHub archive) stays a zip.
A github source built offline has its vendored crates beside its zip, `<commit>.vendor.tar.zst`
(made by impl/rust/upstream.mk, unpacked by it too): not a solid pack, so `restore_solid` leaves
it alone.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cluster.cache import sha256_file, written_beside
from cluster.errors import InfrastructureError
from cluster.yamlio import read_yaml
from controller.images import xz
from controller.images.snapshots import Entry, is_ours, write_entries

SUFFIX = ".tar.xz"
VENDOR_SUFFIX = ".vendor.tar.zst"  # a github snapshot's vendored crates (impl/rust/upstream.mk)


def solid_path(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name.removesuffix(".zip") + SUFFIX)


def vendor_pack(snapshot: Path) -> Path:
    """Where a github source's Makefile packs the crates it vendored for `snapshot`."""
    return snapshot.with_name(snapshot.name.removesuffix(".zip") + VENDOR_SUFFIX)


def packable(snapshot: Path) -> bool:
    if not zipfile.is_zipfile(snapshot):
        return False
    with zipfile.ZipFile(snapshot) as archive:
        return is_ours(archive)


def packed(snapshot: Path) -> Path | None:
    """`<name>.tar.xz` beside the snapshot zip, made on first use; None for a zip that
    controller.images.snapshots did not write (stored as it is)."""
    target = solid_path(snapshot)
    if xz.current(target):
        return target
    if not packable(snapshot):
        return None
    with zipfile.ZipFile(snapshot) as archive, written_beside(target) as tmp:
        with xz.writer(tmp) as stream, \
                tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for info in archive.infolist():
                mode = info.external_attr >> 16
                member = tarfile.TarInfo(info.filename)
                member.mtime = 0
                if stat.S_ISLNK(mode):
                    member.type = tarfile.SYMTYPE
                    member.linkname = archive.read(info).decode("utf-8")
                    member.mode = 0o777
                    tar.addfile(member)
                    continue
                member.size = info.file_size
                member.mode = stat.S_IMODE(mode)
                with archive.open(info) as content:
                    tar.addfile(member, content)
    xz.record_recipe(target)
    return target


def stored_files(whole: dict[str, Path]) -> dict[str, Path]:
    """What a test-pass zip stores for its whole snapshots (`snapshots/<name>.zip` -> file):
    each solid pack by its own name, or the zip itself when it cannot be packed."""
    files = {}
    for relative, path in whole.items():
        solid = packed(path)
        if solid is None:
            files[relative] = path
        else:
            files[relative.removesuffix(".zip") + SUFFIX] = solid
    return files


def _entries(tar: tarfile.TarFile) -> Iterator[Entry]:
    for member in tar:
        if member.issym():
            yield member.name, stat.S_IFLNK | 0o777, member.linkname.encode("utf-8")
        elif member.isfile():
            stream = tar.extractfile(member)
            assert stream is not None  # a regular file has a stream
            yield member.name, stat.S_IFREG | member.mode, stream
        else:
            raise ValueError(f"unexpected {member.type!r} entry {member.name!r}")


def unpack(solid: Path, snapshot: Path) -> None:
    """Write the snapshot zip `snapshot` from its solid pack (nothing, if the pack is damaged)."""
    with written_beside(snapshot) as tmp:
        try:
            with xz.reader(solid, "unpacking a solid snapshot") as stream, \
                    tarfile.open(fileobj=stream, mode="r|") as tar:
                write_entries(tmp, _entries(tar))
        except (tarfile.TarError, ValueError) as error:
            raise InfrastructureError(f"{solid}: damaged ({error})") from error


def tar_of(solid: Path, target: Path) -> None:
    """The tar a solid pack holds, written to `target` (controller.images.delta patches from it)."""
    xz.decompress_file(solid, target, "unpacking a solid snapshot")


def zip_from_tar(tar_path: Path, snapshot: Path, source: Path) -> None:
    """Write the snapshot zip `snapshot` from the tar of its entries; `source` is named if the
    tar is not one a pack holds."""
    with written_beside(snapshot) as tmp:
        try:
            with tarfile.open(tar_path, mode="r:") as tar:
                write_entries(tmp, _entries(tar))
        except (tarfile.TarError, ValueError) as error:
            raise InfrastructureError(f"{source}: damaged ({error})") from error


def byte_for_byte(snapshot: Path) -> bool:
    """Whether the zip is the one its `.metadata` records (False: none recorded, or another zlib)."""
    metadata = snapshot.with_name(snapshot.name + ".metadata")
    data = read_yaml(metadata) if metadata.is_file() else None
    recorded = data.get("sha256") if isinstance(data, dict) else None  # compared, never used
    return bool(recorded) and recorded == sha256_file(snapshot)


@dataclass(frozen=True)
class Restored:
    name: str             # <name>.zip
    byte_for_byte: bool   # the sha256 its .metadata records (False: none recorded, or another zlib)


def restore_solid(folder: Path) -> list[Restored]:
    """Write `<name>.zip` for every `<name>.tar.xz` in a test pass's snapshots/ folder that
    has no zip beside it yet."""
    restored = []
    for solid in sorted(folder.glob(f"*{SUFFIX}")):
        snapshot = folder / (solid.name.removesuffix(SUFFIX) + ".zip")
        if snapshot.is_file() or solid.name.endswith(VENDOR_SUFFIX):
            continue
        unpack(solid, snapshot)
        restored.append(Restored(snapshot.name, byte_for_byte(snapshot)))
    return restored
