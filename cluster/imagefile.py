"""An image tarball's digest file: images/<id>.tar.zst.json beside images/<id>.tar.zst.

The controller writes it when it saves the image; a worker checks the download's length and
sha256 against it before `docker load`, so a truncated or corrupt transfer is caught (and
fetched again) instead of failing in the middle of a load, or worse, failing a test.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cluster.cache import atomic_write, sha256_file

SUFFIX = ".json"


class TarballDigest(BaseModel):
    """What the tarball's bytes must be."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


def digest_path(tarball: Path) -> Path:
    return tarball.with_name(tarball.name + SUFFIX)


def write_digest(tarball: Path, content: Path | None = None) -> TarballDigest:
    """Record the sha256 and size of `content` (default: the tarball itself) beside `tarball`.
    The controller digests its temporary file before renaming it into place, so a worker never
    finds the tarball without its digest file."""
    content = content or tarball
    digest = TarballDigest(sha256=sha256_file(content), size=content.stat().st_size)
    atomic_write(digest_path(tarball), digest.model_dump_json() + "\n")
    return digest
