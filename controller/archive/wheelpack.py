"""holepunch's Python dependencies in a test-pass zip: one solid pack of wheels written stored.

A wheel is a zip whose files are deflated one by one, so a zip of wheels hardly shrinks.
Measured on the wheelhouse .ci/setup makes (40 wheels, 2026-12-07): 12.2 MB as they are, 11.5
as one zstd -19 stream of them, 7.5 MB as one xz stream (controller.images.xz) of the same
wheels with their entries stored instead of deflated. Stored, a wheel keeps its entries, names,
dates and modes, so its RECORD still holds: pip installs it as it would the original, and
re-run.sh installs with `--no-index` from files, checking no hashes. The pack is made once
per set of wheels (its name is the sha256 of their names and hashes), kept in the cache as
`wheels/packs/<sha256>.tar.xz`; re-run.sh unpacks it into wheels/ with python3's own tarfile
before anything is installed.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

from cluster.cache import sha256_file, written_beside
from controller.images import xz

IN_ZIP = "wheels/dependencies.tar.xz"


def stored(wheel: bytes) -> bytes:
    """`wheel` with every entry stored, in the same order with the same metadata; bytes that
    are no zip (nothing for pip to install either) are kept as they are."""
    if not zipfile.is_zipfile(io.BytesIO(wheel)):
        return wheel
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(wheel)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            target.writestr(info, source.read(info), compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def pack_name(wheels: list[Path]) -> str:
    digest = hashlib.sha256()
    for wheel in sorted(wheels, key=lambda path: path.name):
        digest.update(f"{wheel.name} {sha256_file(wheel)}\n".encode())
    return f"{digest.hexdigest()}.tar.xz"


def packed(wheels: list[Path], packs: Path) -> Path:
    """The pack of `wheels` in the folder `packs`, made on first use."""
    target = packs / pack_name(wheels)
    if xz.current(target):
        return target
    with written_beside(target) as tmp, xz.writer(tmp) as stream, \
            tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for wheel in sorted(wheels, key=lambda path: path.name):
            data = stored(wheel.read_bytes())
            member = tarfile.TarInfo(wheel.name)
            member.size, member.mode, member.mtime = len(data), 0o644, 0
            tar.addfile(member, io.BytesIO(data))
    xz.record_recipe(target)
    return target


# re-run.sh's first step: the packed wheels back into wheels/ (python3's tarfile, nothing else)
UNPACK_SHELL = f"""if [ -f {IN_ZIP} ] && [ ! -f wheels/.unpacked ]; then
  python3 -c 'import sys, tarfile
with tarfile.open(sys.argv[1]) as pack:
    pack.extractall(sys.argv[2], **({{"filter": "data"}} if hasattr(tarfile, "data_filter") else {{}}))
' {IN_ZIP} wheels
  touch wheels/.unpacked
fi"""
