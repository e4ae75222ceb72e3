"""Images by ID: use the engine's copy, else fetch images/<id>.tar(.zst) from the shared cache,
load it, and run it only if the engine now holds exactly that ID.

A download is checked against its length and the digest file the controller wrote beside the
tarball (cluster.imagefile) before anything is loaded, and fetched again a bounded number of
times. A tarball can never tag anything: its tags are stripped on the way into `docker load`
(we run images by ID only), and any tag a load reports anyway is put back as it was; any other
image it carried is removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import IO

import docker
from docker.errors import DockerException, NotFound
from pydantic import ValidationError

from cluster.errors import InfrastructureError
from cluster.imagefile import SUFFIX as DIGEST_SUFFIX
from cluster.imagefile import TarballDigest
from cluster.imageid import bare_image_id, image_ref
from worker.locks import host_lock

SUFFIXES = (".tar.zst", ".tar")
LOADED_ID = "Loaded image ID: "
FETCH_ATTEMPTS = 3
log = logging.getLogger(__name__)


class ImageFetchError(InfrastructureError):
    """The image could not be fetched or loaded: retried, with a bound, by the task."""


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


def _copy_counting(src: IO[bytes], out: IO[bytes]) -> tuple[int, str]:
    """Copy; the number of bytes and their sha256."""
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: src.read(1 << 20), b""):
        digest.update(block)
        out.write(block)
        size += len(block)
    return size, digest.hexdigest()


def _digest(data: bytes, where: str) -> TarballDigest:
    try:
        return TarballDigest.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise ImageFetchError(f"{where}: not a tarball digest ({exc.__class__.__name__})") from exc


def _open(source: str, name: str):
    """The file `name` under `source` (a directory or an http URL) as a readable stream and its
    announced length (None when unknown), or None when it is not there."""
    if source.startswith(("http://", "https://")):
        url = source.rstrip("/") + "/" + name
        try:
            response = urllib.request.urlopen(url, timeout=60)  # noqa: S310 - the cache server
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise ImageFetchError(f"fetching {url}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ImageFetchError(f"fetching {url}: {exc}") from exc
        length = response.headers.get("Content-Length")
        return response, int(length) if length and length.isdigit() else None
    path = Path(source) / name
    if not path.is_file():
        return None
    return path.open("rb"), path.stat().st_size


def _fetch(image_id: str, source: str, into: Path) -> Path:
    """Copy or download the tarball of `image_id` from `source` (a directory or an http URL),
    checked against its announced length and its digest file when the cache has one."""
    for suffix in SUFFIXES:
        name = f"images/{image_id}{suffix}"
        opened = _open(source, name)
        if opened is None:
            continue
        stream, announced = opened
        target = into / f"{image_id}{suffix}"
        try:
            with stream, target.open("wb") as out:
                size, sha256 = _copy_counting(stream, out)
        except (OSError, ValueError) as exc:  # http.client.IncompleteRead is an OSError's kin
            raise ImageFetchError(f"fetching {name} from {source}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - http.client errors mid-body
            raise ImageFetchError(f"fetching {name} from {source}: "
                                  f"{exc.__class__.__name__}: {exc}") from exc
        if announced is not None and size != announced:
            raise ImageFetchError(f"{name} from {source}: truncated ({size} of {announced} bytes)")
        digest_file = _open(source, name + DIGEST_SUFFIX)
        if digest_file is not None:
            with digest_file[0] as handle:
                digest = _digest(handle.read(4096), name + DIGEST_SUFFIX)
            if size != digest.size:
                raise ImageFetchError(f"{name} from {source}: {size} bytes, its digest file "
                                      f"says {digest.size} (truncated or corrupt)")
            if sha256 != digest.sha256:
                raise ImageFetchError(f"{name} from {source}: sha256 {sha256[:12]}, its digest "
                                      f"file says {digest.sha256[:12]} (corrupt)")
        return target
    raise ImageFetchError(f"image {image_id[:12]} is neither in the engine nor in {source}/images/")


def _untagged(member: tarfile.TarInfo, data: bytes) -> bytes:
    """manifest.json without RepoTags, index.json without the annotations that name a tag."""
    doc = json.loads(data)
    if member.name.removeprefix("./") == "manifest.json" and isinstance(doc, list):
        for entry in doc:
            if isinstance(entry, dict):
                entry["RepoTags"] = None
    elif isinstance(doc, dict):  # index.json
        for manifest in doc.get("manifests") or []:
            if isinstance(manifest, dict) and isinstance(manifest.get("annotations"), dict):
                for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
                    manifest["annotations"].pop(key, None)
    return json.dumps(doc).encode()


TAG_FILES = ("manifest.json", "index.json")


def strip_tags(src: IO[bytes], dst: IO[bytes]) -> None:
    """Copy a `docker save` tar stream with every tag it carries removed."""
    with tarfile.open(fileobj=src, mode="r|") as tar_in, \
            tarfile.open(fileobj=dst, mode="w|", format=tarfile.PAX_FORMAT) as tar_out:
        for member in tar_in:
            name = member.name.removeprefix("./")
            if name == "repositories":  # the oldest format's tags
                continue
            if member.isfile() and name in TAG_FILES:
                stream = tar_in.extractfile(member)
                assert stream is not None  # a regular file has a stream
                data = _untagged(member, stream.read())
                member.size = len(data)
                tar_out.addfile(member, io.BytesIO(data))
            else:
                tar_out.addfile(member, tar_in.extractfile(member) if member.isfile() else None)


def _engine_images() -> tuple[dict[str, str], set[str]]:
    """Every tag the engine holds -> its image ID; and every image ID it holds."""
    try:
        images = _engine().images(all=True)
    except DockerException as exc:
        raise InfrastructureError(f"Docker engine not reachable: {exc}") from exc
    tags = {tag: bare_image_id(image["Id"]) for image in images
            for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"}
    return tags, {bare_image_id(image["Id"]) for image in images}


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    """A stream Popen was asked to pipe (which it then always has)."""
    assert stream is not None
    return stream


def _load(tarball: Path) -> tuple[list[str], list[str]]:
    """`docker load` the tarball, its tags stripped; (image IDs, tags) it reported. A broken
    decompression is a corrupt download (fetched again); a refused tar is a mismatch."""
    decompress = (subprocess.Popen(["zstd", "-dc", "--", str(tarball)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
                  if tarball.name.endswith(".zst") else None)
    load = subprocess.Popen(["docker", "load"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    sink = _pipe(load.stdin)
    stripped: Exception | None = None
    try:
        with (_pipe(decompress.stdout) if decompress else tarball.open("rb")) as src:
            strip_tags(src, sink)
    except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
        stripped = exc
    finally:
        try:
            sink.close()
        except OSError:
            pass
        load.stdin = None  # closed: communicate() must not flush it
    out, err = load.communicate()
    if decompress:
        zstd_err = _pipe(decompress.stderr).read().decode(errors="replace")
        if decompress.wait() != 0:
            raise ImageFetchError(f"{tarball.name} does not decompress: {zstd_err.strip()[-300:]}")
    if stripped is not None and not isinstance(stripped, BrokenPipeError):
        raise ImageFetchError(f"{tarball.name} is not a readable image tar: {stripped}")
    if load.returncode != 0:
        raise ImageMismatchError(f"docker load of {tarball.name} failed: "
                                 f"{err.decode(errors='replace').strip()}")
    lines = out.decode(errors="replace").splitlines()
    ids = [bare_image_id(line.split(LOADED_ID, 1)[1].strip()) for line in lines if LOADED_ID in line]
    tags = [line.split("Loaded image: ", 1)[1].strip() for line in lines if "Loaded image: " in line]
    return ids, tags


def _put_back(tags: list[str], before: dict[str, str]) -> list[str]:
    """Tags a load set: each back to the image it named before, or removed; the image IDs the
    load had pointed them at. A backstop only (strip_tags keeps tags out of every load): a new
    tag on the wanted image is its only name, so removing it removes the image too, and the
    load ends as a mismatch: refused, never run."""
    pointed: list[str] = []
    for tag in tags:
        api = _engine()
        try:
            pointed.append(bare_image_id(api.inspect_image(tag)["Id"]))
        except (NotFound, KeyError):
            pass
        repository, _, name = tag.rpartition(":")
        try:
            if tag in before:
                api.tag(image_ref(before[tag]), repository, name, force=True)
            else:
                api.remove_image(tag, noprune=True)
        except DockerException as exc:
            raise ImageMismatchError(f"cannot undo tag {tag} that a tarball set: {exc}") from exc
        log.warning("a tarball tagged %s; %s", tag, "put back" if tag in before else "removed")
    return pointed


def _fetch_and_load(image_id: str, source: str) -> list[str]:
    """Fetch, check, load: the image IDs the load added to the engine. A bad download is
    fetched again, up to FETCH_ATTEMPTS times, then ImageFetchError (an infrastructure fault,
    never a test's)."""
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            with tempfile.TemporaryDirectory(prefix="holepunch-image-") as tmp:
                tarball = _fetch(image_id, source, Path(tmp))
                with host_lock("image-load"):  # one load at a time: its tags are ours to judge
                    tags_before, ids_before = _engine_images()
                    ids, tags = _load(tarball)
                    pointed = _put_back(tags, tags_before)
            # An image the engine held already is never ours to remove, whatever a tarball says.
            return [other for other in dict.fromkeys(ids + pointed)
                    if other == image_id or other not in ids_before]
        except ImageFetchError as exc:
            if attempt == FETCH_ATTEMPTS or "neither in the engine" in str(exc):
                raise ImageFetchError(f"{exc} (after {attempt} attempts)") from exc
            log.warning("image %s: %s; fetching it again (%d of %d)", image_id[:12], exc,
                        attempt + 1, FETCH_ATTEMPTS)
            time.sleep(attempt)
    raise AssertionError("unreachable")


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
        loaded = _fetch_and_load(image_id, source)
        stray = [other for other in dict.fromkeys(loaded) if other != image_id]
        for other in stray:  # a tampered tarball must not leave its image behind to be used
            subprocess.run(["docker", "image", "rm", "-f", image_ref(other)],
                           capture_output=True, check=False)
        if not has_image(image_id):
            got = ", ".join(s[:12] for s in stray) or "nothing usable"
            raise ImageMismatchError(f"images/{image_id[:12]}… loaded as {got}, not as image "
                                     f"{image_id[:12]}: refusing to run it")
    return True
