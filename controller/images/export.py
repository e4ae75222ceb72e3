"""Save built images into the cache as images/<imageID>.tar.zst, for workers on other hosts."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cluster.cache import Cache
from cluster.errors import InfrastructureError
from cluster.imagefile import digest_path, write_digest
from cluster.imageid import image_ref


def export_image(cache: Cache, image_id: str) -> tuple[Path, bool]:
    """(path, written): each image is saved once; later passes find it there. Its digest
    file (cluster.imagefile) is written after it, and for a tarball saved before there was one."""
    target = cache.folder("images") / f"{image_id}.tar.zst"
    if target.is_file():
        if not digest_path(target).is_file():
            write_digest(target)
        return target, False
    if shutil.which("zstd") is None:
        raise InfrastructureError("zstd is not installed (apt-get install zstd)")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{image_id}.", suffix=".tmp")
    os.close(fd)
    command = f"docker save {image_ref(image_id)} | zstd -q -T0 -3 -o '{tmp}' -f"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        raise InfrastructureError(f"saving image {image_id[:12]} failed: {result.stderr.strip()}")
    write_digest(target, Path(tmp))
    os.replace(tmp, target)
    return target, True
