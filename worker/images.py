"""Images by ID: use the engine's copy, else fetch images/<id>.tar(.zst) from the shared cache,
load it, and run it only if the engine now holds exactly that ID."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

import docker
from docker.errors import DockerException, NotFound

from cluster.errors import InfrastructureError
from cluster.imageid import bare_image_id, image_ref
from worker.locks import host_lock

SUFFIXES = (".tar.zst", ".tar")


class ImageFetchError(InfrastructureError):
    """The image could not be fetched or loaded: retried, with a bound, by the task."""


LOADED_ID = "Loaded image ID: "


class ImageMismatchError(InfrastructureError):
    """The tarball loaded, but not as the image asked for: never run, never retried blindly."""


@lru_cache(maxsize=1)
def _engine() -> docker.APIClient:
    return docker.from_env(timeout=60).api


def has_image(image_id: str) -> bool:
    """Through the engine's API: five `docker image inspect` runs, one per image of a test,
    cost a few tenths of a second before every test on a busy host."""
    try:
        return _engine().inspect_image(image_ref(image_id)).get("Id") == image_ref(image_id)
    except NotFound:
        return False
    except DockerException as exc:
        raise InfrastructureError(f"Docker engine not reachable: {exc}") from exc


def _fetch(image_id: str, source: str, into: Path) -> Path:
    """Copy or download the tarball of `image_id` from `source` (a directory or an http URL)."""
    for suffix in SUFFIXES:
        name = f"images/{image_id}{suffix}"
        target = into / f"{image_id}{suffix}"
        if source.startswith(("http://", "https://")):
            url = source.rstrip("/") + "/" + name
            try:
                with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
                return target
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    continue
                raise ImageFetchError(f"fetching {url}: HTTP {exc.code}") from exc
            except (urllib.error.URLError, OSError) as exc:
                raise ImageFetchError(f"fetching {url}: {exc}") from exc
        path = Path(source) / name
        if path.is_file():
            shutil.copyfile(path, target)
            return target
    raise ImageFetchError(f"image {image_id[:12]} is neither in the engine nor in {source}/images/")


def _load(tarball: Path) -> list[str]:
    """`docker load` the tarball; returns the image IDs it reported."""
    if tarball.name.endswith(".zst"):
        command = f"zstd -dc -- '{tarball}' | docker load"
    else:
        command = f"docker load -i '{tarball}'"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise ImageMismatchError(f"docker load of {tarball.name} failed: {result.stderr.strip()}")
    return [bare_image_id(line.split(LOADED_ID, 1)[1].strip())
            for line in result.stdout.splitlines() if LOADED_ID in line]


def ensure_image(image_id: str, source: str | None) -> bool:
    """Make sure the engine has `image_id`; True when it had to be fetched.

    Concurrent tasks on one host that need the same image fetch it once: the second waits on
    the lock and then finds it loaded.
    """
    if has_image(image_id):
        return False
    if not source:
        raise ImageFetchError(f"image {image_id[:12]} is not in the engine and no image source "
                              "(cache directory or URL) was given")
    with host_lock(f"image-{image_id}"):
        if has_image(image_id):
            return False
        with tempfile.TemporaryDirectory(prefix="holepunch-image-") as tmp:
            tarball = _fetch(image_id, source, Path(tmp))
            loaded = _load(tarball)
        stray = [other for other in loaded if other != image_id]
        for other in stray:  # a tampered tarball must not leave its image behind to be used
            subprocess.run(["docker", "image", "rm", "-f", image_ref(other)],
                           capture_output=True, check=False)
        if not has_image(image_id):
            got = ", ".join(s[:12] for s in stray) or "nothing usable"
            raise ImageMismatchError(f"{tarball.name} loaded as {got}, not as image "
                                     f"{image_id[:12]}: refusing to run it")
    return True
