"""The base rootfs in a test-pass zip: stored zstd-compressed, made once per rootfs.

The tarball (rootfs/<sha256>.tar, about 125 MB) is what a re-run imports the base image from.
Deflating it into every zip cost about 10 s and gave 56 MB; `rootfs/<sha256>.tar.zst` is made
once beside it in the cache (zstd -19 --long: 29.8 MB in 25 s on two cores; -12 gave 33.9) and
stored in zips as it is. A re-run unpacks it back to the .tar the base Makefile reads, and
checks it against its name.
"""

from __future__ import annotations

from pathlib import Path

from cluster.cache import sha256_file, written_beside
from cluster.errors import InfrastructureError
from controller.images import zstd

LEVEL = ["-19", "--long=27"]  # made once per rootfs
SUFFIX = ".zst"


def compressed(tarball: Path) -> Path:
    """`<tarball>.zst` beside it, compressed on first use."""
    target = tarball.with_name(tarball.name + SUFFIX)
    if not target.is_file():
        with written_beside(target) as tmp:
            zstd.run([*LEVEL, "-T0", "-f", str(tarball), "-o", str(tmp)],
                     f"compressing {tarball.name}")
    return target


def unpack(tarball: Path) -> bool:
    """Make `rootfs/<sha256>.tar` from its .zst if only that is there; True if it unpacked."""
    source = tarball.with_name(tarball.name + SUFFIX)
    if tarball.is_file() or not source.is_file():
        return False
    with written_beside(tarball) as tmp:
        zstd.run(["-d", "--long=27", "-f", str(source), "-o", str(tmp)], f"unpacking {source.name}")
        digest = sha256_file(tmp)
        if digest != tarball.name.removesuffix(".tar"):
            raise InfrastructureError(f"{source}: unpacks to sha256 {digest}, not its name")
    return True
