"""The base rootfs in a test-pass zip: stored zstd-compressed, made once per rootfs.

The tarball (rootfs/<sha256>.tar, about 160 MB) is what a re-run imports the base image from.
Deflating it into every zip cost about 10 s and gave 56 MB; `rootfs/<sha256>.tar.zst` is made
once beside it in the cache (zstd -10: about 42 MB) and stored in zips as it is. A re-run unpacks
it back to the .tar the base Makefile reads, and checks it against its name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cluster.cache import sha256_file
from cluster.errors import InfrastructureError

LEVEL = 10
SUFFIX = ".zst"


def _zstd(args: list[str], what: str) -> None:
    if shutil.which("zstd") is None:
        raise InfrastructureError("zstd is not installed (apt-get install zstd)")
    result = subprocess.run(["zstd", "-q", "-f", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InfrastructureError(f"{what} failed: {result.stderr.strip()[-300:]}")


def _tmp_beside(target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def compressed(tarball: Path) -> Path:
    """`<tarball>.zst` beside it, compressed on first use (written to a temporary name)."""
    target = tarball.with_name(tarball.name + SUFFIX)
    if target.is_file():
        return target
    tmp = _tmp_beside(target)
    try:
        _zstd([f"-{LEVEL}", "-T0", str(tarball), "-o", str(tmp)], f"compressing {tarball.name}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def unpack(tarball: Path) -> bool:
    """Make `rootfs/<sha256>.tar` from its .zst if only that is there; True if it unpacked."""
    source = tarball.with_name(tarball.name + SUFFIX)
    if tarball.is_file() or not source.is_file():
        return False
    tmp = _tmp_beside(tarball)
    try:
        _zstd(["-d", str(source), "-o", str(tmp)], f"unpacking {source.name}")
        digest = sha256_file(tmp)
        if digest != tarball.name.removesuffix(".tar"):
            raise InfrastructureError(f"{source}: unpacks to sha256 {digest}, not its name")
        os.replace(tmp, tarball)
    finally:
        tmp.unlink(missing_ok=True)
    return True
