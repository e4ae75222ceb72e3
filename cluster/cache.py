"""The content-addressed cache: where it lives, its folders, and writes that never leave half files.

Files are named by the full sha256 of what identifies them; short hashes are for humans only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FOLDERS = ("snapshots", "makefiles", "test-matrix", "docker-compose", "images", "test-passes",
           "cluster")  # cluster: settings of `cluster up` (its secrets live elsewhere)
ENV_VAR = "HOLEPUNCH_CACHE"


def default_cache_root(cli_value: str | Path | None = None,
                       environ: Mapping[str, str] | None = None) -> Path:
    """`--cache-dir`, else `$HOLEPUNCH_CACHE`, else `~/.cache/holepunch`."""
    env = os.environ if environ is None else environ
    if cli_value:
        return Path(cli_value).expanduser()
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "holepunch"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def short(digest: str) -> str:
    """For logs only."""
    return digest[:12]


def atomic_write(path: Path, data: bytes | str) -> Path:
    """Write to a temporary file beside `path`, then rename: readers see all or nothing."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def written_beside(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` that becomes `target` when the block ends without an
    error, and is removed when it raises: large files made by other programs are never seen
    half written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Cache:
    root: Path

    def folder(self, name: str) -> Path:
        if name not in FOLDERS:
            raise ValueError(f"unknown cache folder {name!r}")
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, relative: str) -> Path:
        """Resolve a cache-relative name as records hold it (`docker-compose/<sha>.yaml`)."""
        return self.root / relative

    def store(self, folder: str, data: bytes | str, suffix: str) -> tuple[str, Path]:
        """Store content under its own sha256; storing the same content twice is a no-op."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        digest = sha256_bytes(raw)
        path = self.folder(folder) / f"{digest}{suffix}"
        if not path.exists():
            atomic_write(path, raw)
        return digest, path

    def keyed(self, folder: str, key: str, suffix: str) -> Path:
        """The path of an entry named by a key computed from its inputs (not its content)."""
        return self.folder(folder) / f"{key}{suffix}"

    @contextmanager
    def locked(self, name: str, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
        """An exclusive flock on `build/locks/<name>.lock`, for work in the cache's shared build
        area that two checkouts (two CI jobs on one runner) must not do at once; released when
        the holder exits, even by kill. `waiting` is called once if another holder has it."""
        folder = self.root / "build" / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{name}.lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waiting()
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
