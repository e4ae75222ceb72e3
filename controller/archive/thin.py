"""Thin snapshots: a test-pass zip holds an entry that several snapshots share only once.

Snapshots this project wrote travel solid or as deltas (controller.images.solid,
controller.images.delta), which share far more than whole entries; what is left for thin zips
is the zips it did not write, stored as they are: GitHub archives of two commits of one
repository share most of their files. A test-pass zip must carry every
snapshot for an offline re-run, so `thin_snapshots` keeps the first snapshot that holds an
entry whole and stores each later one as `snapshots/<name>.thin.zip` without the entries it
shares, plus `snapshots/<name>.thin.yaml` saying where each entry now is. `restore_snapshots`
(run by a re-run before it builds) puts `<name>.zip` back together.

Entries are moved as they are stored, compressed, with their own local headers (never
decompressed and compressed again), so a snapshot written by controller.images.snapshots comes back
byte for byte: the restore checks the zip's sha256 against the one recorded, and otherwise
checks every entry's CRC. Two entries are "the same" only when their names and stored bytes are.
"""

from __future__ import annotations

import copy
import io
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field, StrictInt, StrictStr, StringConstraints, model_validator

from cluster.cache import sha256_file
from cluster.errors import ConfigError, InfrastructureError
from cluster.models import FileName, Sha256, YamlModel
from cluster.yamlio import dump_yaml, load_model

THIN_ZIP = ".thin.zip"
THIN_MANIFEST = ".thin.yaml"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature ... file name length, extra length
_DATA_DESCRIPTOR = 0x08


def _record(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The entry's local header, name, extra and stored data, exactly as in the archive."""
    fp = archive.fp
    assert fp is not None  # an open archive
    fp.seek(info.header_offset)
    header = fp.read(_LOCAL_HEADER.size)
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise InfrastructureError(f"{archive.filename}: bad local header for {info.filename}")
    name_length, extra_length = fields[-2], fields[-1]
    return header + fp.read(name_length + extra_length + info.compress_size)


def movable(archive: zipfile.ZipFile) -> bool:
    """Whether entries can be moved as records: none ends in a data descriptor (streamed
    zips); ours never do, a foreign zip is then stored whole."""
    return not any(info.flag_bits & _DATA_DESCRIPTOR for info in archive.infolist())


def write_records(target: io.BufferedIOBase | Path,
                  records: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
    """A zip of the given entries in this order, each record written as it was stored."""
    with zipfile.ZipFile(target, "w") as out:
        fp = out.fp
        assert fp is not None  # an open archive
        for info, record in records:
            moved = copy.copy(info)
            moved.header_offset = fp.tell()
            fp.write(record)
            out.filelist.append(moved)
            out.NameToInfo[moved.filename] = moved
        out.start_dir = fp.tell()
        # the central directory is written from filelist on close (a private flag typeshed lacks)
        out._didModify = True  # type: ignore[attr-defined]


EntryName = Annotated[StrictStr, StringConstraints(min_length=1, max_length=4096)]


class ThinManifest(YamlModel):
    """`snapshots/<name>.thin.yaml`, read back from a test-pass zip (not trusted): the snapshot
    and every zip it draws on are plain names in the same folder; entries are looked up by
    name in them, never written anywhere by their own names."""

    snapshot: FileName
    sha256: Sha256
    sources: list[FileName] = Field(min_length=1)
    entries: list[tuple[EntryName, StrictInt]]

    @model_validator(mode="after")
    def _sources_exist(self) -> ThinManifest:
        if not self.snapshot.endswith(".zip") or not self.sources[0].endswith(THIN_ZIP):
            raise ValueError(f"expected snapshot <name>.zip and sources[0] <name>{THIN_ZIP}")
        for index, (_, source) in enumerate(self.entries):
            if not 0 <= source < len(self.sources):
                raise ValueError(f"entries[{index}] names source {source}; there are "
                                 f"{len(self.sources)}")
        return self


@dataclass
class ThinPack:
    """What a test-pass zip stores for its snapshots: whole files, and thin ones as bytes."""

    whole: dict[str, Path] = field(default_factory=dict)   # name in the zip -> file
    thin: dict[str, bytes] = field(default_factory=dict)    # name in the zip -> content
    shared_bytes: int = 0                                    # stored once instead of twice


def thin_snapshots(snapshots: dict[str, Path]) -> ThinPack:
    """`snapshots/<name>.zip` -> its file, for every snapshot of a pass: what to store.

    Snapshots are taken in name order; an entry already stored by an earlier one (same name,
    same stored bytes) is left out of a later one, which is then stored thin.
    """
    pack = ThinPack()
    seen: dict[tuple, tuple[str, bytes]] = {}  # (name, crc, sizes) -> (stored in, record)
    for relative in sorted(snapshots):
        path = snapshots[relative]
        if not zipfile.is_zipfile(path):
            pack.whole[relative] = path  # not ours to take apart: stored as it is
            continue
        with zipfile.ZipFile(path) as archive:
            if not movable(archive):
                pack.whole[relative] = path
                continue
            thin_name = relative.removesuffix(".zip") + THIN_ZIP
            kept: list[tuple[zipfile.ZipInfo, bytes]] = []
            order: list[list] = []
            sources = [thin_name]
            candidates: list[tuple[tuple, bytes]] = []
            for info in archive.infolist():
                key = (info.filename, info.CRC, info.file_size, info.compress_size,
                       info.compress_type)
                record = _record(archive, info)
                donor = seen.get(key)
                if donor is not None and donor[1] == record:
                    if donor[0] not in sources:
                        sources.append(donor[0])
                    order.append([info.filename, sources.index(donor[0])])
                    pack.shared_bytes += len(record)
                else:
                    kept.append((info, record))
                    order.append([info.filename, 0])
                    candidates.append((key, record))
        stored_as = thin_name if len(sources) > 1 else relative
        for key, record in candidates:
            seen.setdefault(key, (stored_as, record))
        if len(sources) == 1:
            pack.whole[relative] = path
            continue
        buffer = io.BytesIO()
        write_records(buffer, kept)
        pack.thin[thin_name] = buffer.getvalue()
        pack.thin[relative.removesuffix(".zip") + THIN_MANIFEST] = dump_yaml({
            "snapshot": Path(relative).name, "sha256": sha256_file(path),
            "sources": [Path(s).name for s in sources], "entries": order}).encode("utf-8")
    return pack


def restore_snapshots(folder: Path) -> list[str]:
    """Put every `<name>.zip` of a test pass's snapshots/ folder back together from its thin
    zip and the files it shares entries with; returns the names restored."""
    restored = []
    for manifest_path in sorted(folder.glob(f"*{THIN_MANIFEST}")):
        manifest = load_model(ThinManifest, manifest_path)
        target = folder / manifest.snapshot
        if target.is_file() and sha256_file(target) == manifest.sha256:
            continue
        missing = [name for name in manifest.sources if not (folder / name).is_file()]
        if missing:
            raise ConfigError(manifest_path, "sources", f"{', '.join(missing)} not in {folder}")
        archives = [zipfile.ZipFile(folder / name) for name in manifest.sources]
        try:
            records = []
            for index, (name, source) in enumerate(manifest.entries):
                archive = archives[source]
                try:
                    info = archive.getinfo(name)
                except KeyError:
                    raise ConfigError(manifest_path, f"entries[{index}]",
                                      f"{name!r} is not in {manifest.sources[source]}") from None
                records.append((info, _record(archive, info)))
            tmp = target.with_name(f".{target.name}.restoring")
            write_records(tmp, records)
        finally:
            for archive in archives:
                archive.close()
        if sha256_file(tmp) != manifest.sha256:
            with zipfile.ZipFile(tmp) as check:
                bad = check.testzip()
            if bad is not None:
                tmp.unlink()
                raise InfrastructureError(f"{manifest_path}: restored entry {bad} fails its CRC")
        tmp.replace(target)
        restored.append(target.name)
    return restored

