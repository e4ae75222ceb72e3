"""The base rootfs in a test-pass zip: stored xz-compressed, made once per rootfs.

The tarball (rootfs/<sha256>.tar, about 125 MB) is what a re-run imports the base image from.
Deflating it into every zip cost about 10 s and gave 56 MB; `rootfs/<sha256>.tar.xz` is made
once beside it in the cache (controller.images.xz: 26.6 MB in about 50 s on one core; zstd -19
--long gave 29.8, -12 33.9) and stored in zips as it is. A re-run unpacks it back to the .tar
the base Makefile reads, and checks it against its name.
"""

from __future__ import annotations

from pathlib import Path

from cluster.cache import sha256_file, written_beside
from cluster.errors import InfrastructureError
from controller.images import xz

SUFFIX = ".xz"


def compressed(tarball: Path) -> Path:
    """`<tarball>.xz` beside it, compressed on first use (again if made another way)."""
    target = tarball.with_name(tarball.name + SUFFIX)
    if not xz.current(target):
        with written_beside(target) as tmp:
            xz.compress_file(tarball, tmp)
        xz.record_recipe(target)
    return target


def unpack(tarball: Path) -> bool:
    """Make `rootfs/<sha256>.tar` from its .xz if only that is there; True if it unpacked."""
    source = tarball.with_name(tarball.name + SUFFIX)
    if tarball.is_file() or not source.is_file():
        return False
    with written_beside(tarball) as tmp:
        xz.decompress_file(source, tmp, "unpacking the base rootfs")
        digest = sha256_file(tmp)
        if digest != tarball.name.removesuffix(".tar"):
            raise InfrastructureError(f"{source}: unpacks to sha256 {digest}, not its name")
    return True
