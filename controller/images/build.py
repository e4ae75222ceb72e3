"""Build or resolve the images a pass needs, each from a snapshot so that a rebuild is offline.

For a local source: snapshot the folder (after its Makefile's `vendor` step fetched the
dependencies, the only networked step), unpack the snapshot into the cache's build area and run
the Makefile there. An image whose image.yaml names the current snapshot and whose ID the engine
has is not rebuilt. The base image's Makefile caches its own rootfs tarball instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cluster.cache import Cache, short
from cluster.errors import ConfigError, InfrastructureError
from cluster.imageid import image_ref
from cluster.models import DEFAULT_RELAY, ImageInfo, ImplsFile, Relay
from cluster.yamlio import load_model
from controller.images import buildfolder, github_archive, rootfs, solid
from controller.images.snapshots import extract_zip, store_snapshot
from controller.images.sources import source_digest

Log = Callable[[str], None]
Status = Callable[[str, str], None]  # (image, what it is doing or what came of it)

# Where each image's make, compiler and package-manager output goes (under the cache), and how
# much of it a failed build shows: the terminal gets one line per image, not thousands.
BUILD_LOGS = ("logs", "build")
TAIL_LINES = 40
OUTPUTS = ("log", "terminal")


FOLDER_WORK = "github"  # <cache>/build/github/<id>: where a re-run makes a kept build folder


def github_rebuild_args(snapshot: str) -> list[str]:
    """make's arguments for a github source's re-run: offline, from the vendored crates."""
    return ["all", f"SNAPSHOT={snapshot}", "BUILD=offline"]


def is_github_zip(archive: Path) -> bool:
    """GitHub's archive of a commit, not a snapshot of ours: no writer of ours made it and no
    Makefile sits at its top (it is one folder, <repo>-<commit>/)."""
    if not zipfile.is_zipfile(archive) or solid.packable(archive):
        return False
    with zipfile.ZipFile(archive) as opened:
        return "Makefile" not in opened.namelist()


class BuildError(InfrastructureError):
    """A Makefile failed: the message names the command and carries its log's tail."""


def build_log_path(cache: Cache, name: str) -> Path:
    return cache.root.joinpath(*BUILD_LOGS, f"{name}.log")


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    with path.open(errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines))


@dataclass(frozen=True)
class BuildTarget:
    name: str                # 'base', 'router', a relay ('rust-relay', 'go-relay') or an implementation id
    folder: Path             # the folder holding the Makefile
    kind: str = "local"      # 'local', 'github' or 'base'
    commit: str | None = None
    build: str | None = None       # a github source's `build` (impls.yaml): dockerfile | offline
    dockerfile: str | None = None  # a github source's own Dockerfile, in its tree
    repo: str | None = None        # a github source's owner/name


@dataclass(frozen=True)
class Built:
    target: BuildTarget
    image: ImageInfo
    rebuilt: bool
    seconds: float


def infrastructure_targets(root: Path,
                           relays: Iterable[Relay] = (DEFAULT_RELAY,)) -> list[BuildTarget]:
    """What a pass needs before any implementation: base, NAT router, then the relays its tests
    meet through (each from its folder, `<name>-relay/`), in that order."""
    return [BuildTarget("base", root / "impl" / "base", kind="base"),
            BuildTarget("router", root / "router"),
            *(BuildTarget(relay.image_key, root / relay.image_key)
              for relay in dict.fromkeys(relays))]


def implementation_targets(root: Path, impls: ImplsFile, ids: Iterable[str]) -> list[BuildTarget]:
    by_id = impls.by_id()
    targets = []
    for impl_id in ids:
        if impl_id not in by_id:
            raise ConfigError(root / "impls.yaml", "implementations",
                              f"no implementation with id {impl_id!r}")
        impl = by_id[impl_id]
        targets.append(BuildTarget(impl.id, root / impl.folder, impl.source.type, impl.source.commit,
                                   impl.source.build,
                                   impl.source.dockerfile if impl.source.build else None,
                                   impl.source.repo))
    return targets


@lru_cache(maxsize=1)
def _engine():
    """The engine's API, once per process: a `docker image inspect` run per image cost about
    25 ms each (two per image on a warm pass), before the first test could begin."""
    import docker  # here: the builder is imported by commands that never touch the engine
    return docker.from_env(timeout=60).api


def _inspect(image_id: str) -> dict | None:
    from docker.errors import DockerException, NotFound
    try:
        return _engine().inspect_image(image_ref(image_id))
    except NotFound:
        return None
    except DockerException as exc:
        raise InfrastructureError(f"the Docker engine is not reachable: {exc}") from exc


def engine_has_image(image_id: str) -> bool:
    return _inspect(image_id) is not None


def engine_first_layer(image_id: str) -> str | None:
    """The bottom layer of an image the engine has (None if it lacks it): for every image we
    build, the base rootfs it was built FROM, which the base image holds as its only layer."""
    found = _inspect(image_id)
    layers = ((found or {}).get("RootFS") or {}).get("Layers") or []
    return layers[0] if layers else None


def read_image_yaml(folder: Path) -> ImageInfo | None:
    path = folder / "image.yaml"
    return load_model(ImageInfo, path) if path.is_file() else None


class Builder:
    """Runs Makefiles; the only place the controller shells out to make."""

    def __init__(self, cache: Cache, log: Log = print, has_image: Callable[[str], bool] = engine_has_image,
                 env: dict[str, str] | None = None,
                 first_layer: Callable[[str], str | None] = engine_first_layer,
                 status: Status | None = None, output: str = "log"):
        """`status(image, text)` is told what each build does (default: `log("image: text")`);
        `output` is where make's own output goes: "log" (a file per image under the cache's
        logs/build/, its tail in the error when a build fails) or "terminal" (as it comes)."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.cache = cache
        self.log = log
        self.status: Status = status or (lambda name, text: log(f"{name}: {text}"))
        self.output = output
        self._local = threading.local()  # the image this thread builds: its log file
        self.has_image = has_image
        self.first_layer = first_layer
        self.base_layer: str | None = None  # known once the base is built: images must sit on it
        self._told_stale: set[str] = set()
        self.env = {**os.environ, **(env or {}), "CACHE_DIR": str(cache.root)}

    def build(self, target: BuildTarget) -> Built:
        """Build one target, alone: another checkout building the same image on this cache waits,
        since both would unpack into, and make in, the same folder of the build area."""
        with self._alone("base" if target.kind == "base" else target.name):
            return self._build(target)

    @contextmanager
    def _alone(self, name: str) -> Iterator[None]:
        """Hold the cache's lock for `name` (once per process: build() calls build_snapshot())."""
        held = self._local.__dict__.setdefault("held", set())
        if name in held:
            yield
            return
        self._local.name = name
        with self.cache.locked(f"image-{name}",
                               lambda: self.status(name, "waiting for another build of it")):
            held.add(name)
            self._local.fresh = True  # the first make of this build starts its log anew
            try:
                yield
            finally:
                held.discard(name)

    def _build(self, target: BuildTarget) -> Built:
        started = time.monotonic()
        if target.kind == "base":
            image = self.build_base(target.folder)
            self.base_layer = self.first_layer(image.image_id)
            return Built(target, image, rebuilt=True, seconds=time.monotonic() - started)

        snapshot = self._snapshot_name(target)
        if target.kind == "github":  # what a test pass's re-run builds its zip with (buildfolder)
            buildfolder.keep(self.cache.root, target.name, target.folder)
        current = read_image_yaml(target.folder)
        if current and current.snapshot == snapshot and self._reusable(target, current.image_id):
            self.status(target.name, f"up to date (image {short(current.image_id)}, {snapshot})")
            self._pack_vendored(target, snapshot)
            return Built(target, current, rebuilt=False, seconds=time.monotonic() - started)
        if target.kind != "github":
            # A fresh clone has no image.yaml, but the cache's build area remembers the last
            # build of this image: the same snapshot (same sources, same Makefile) and an engine
            # that still has the image mean there is nothing to build.
            last = read_image_yaml(self._workdir(target.name, target.folder.name))
            if last and last.snapshot == snapshot and self._reusable(target, last.image_id):
                shutil.copyfile(self._workdir(target.name, target.folder.name) / "image.yaml",
                                target.folder / "image.yaml")
                self.status(target.name, f"up to date in the cache (image {short(last.image_id)}, "
                         f"{snapshot})")
                return Built(target, last, rebuilt=False, seconds=time.monotonic() - started)

        archive = self.cache.path(snapshot)
        if not archive.is_file() and target.kind == "github":
            if not target.repo or not target.commit:
                raise InfrastructureError(f"{target.name}: {archive} is missing, and no repo and "
                                          "commit to fetch it from")
            self.status(target.name, f"downloading {github_archive.archive_url(target.repo, target.commit)}")
            github_archive.fetch(target.repo, target.commit, archive)
        if not archive.is_file():
            self.status(target.name, "vendoring dependencies (make vendor)")
            self._make(target.folder, ["vendor"])
            store_snapshot(target.folder, Path(snapshot).stem, self.cache, str(target.folder))
            solid.packed(archive)  # what test-pass zips store of it, made once (controller.images.solid)
            self.status(target.name, f"stored {snapshot}")

        if target.kind == "github":
            # The seed's layout: the Makefile beside impls.yaml unpacks the github zip itself;
            # impls.yaml's `build` says how (the source's own Dockerfile, or offline).
            how = [f"BUILD={target.build}", f"DOCKERFILE={target.dockerfile}"] if target.build else []
            if target.build == "offline":
                self._make(target.folder, ["vendor", f"SNAPSHOT={snapshot}"])  # a no-op once done
            self._make(target.folder, ["all", f"SNAPSHOT={snapshot}", *how])
            image = self._image_of(target.folder)
        else:
            image = self.build_snapshot(target.name, snapshot, target.folder.name)
            shutil.copyfile(self._workdir(target.name, target.folder.name) / "image.yaml",
                            target.folder / "image.yaml")
        self.status(target.name, f"image {short(image.image_id)} in {time.monotonic() - started:.1f} s")
        return Built(target, image, rebuilt=True, seconds=time.monotonic() - started)

    def _pack_vendored(self, target: BuildTarget, snapshot: str) -> None:
        """An image built offline before its Makefile packed the crates it vendored: pack them
        now, once (its `vendor` target), so that test-pass zips carry them (impl/rust/upstream.mk)."""
        if (target.kind == "github" and target.build == "offline"
                and not solid.vendor_pack(self.cache.path(snapshot)).is_file()):
            self._make(target.folder, ["vendor", f"SNAPSHOT={snapshot}"])

    def _reusable(self, target: BuildTarget, image_id: str) -> bool:
        """The engine has the image, built on the base this build uses (a new base rootfs means
        every image is built again: its Makefile sees the new base ID)."""
        if self.base_layer is None:
            return self.has_image(image_id)
        layer = self.first_layer(image_id)  # None: the engine lacks it (one inspect for both)
        if layer is None or layer == self.base_layer:
            return layer is not None
        if image_id not in self._told_stale:  # the checkout and the build area often name one image
            self._told_stale.add(image_id)
            self.status(target.name, f"image {short(image_id)} was built on another base image: "
                     f"building it again")
        return False

    def build_snapshot(self, name: str, snapshot: str, folder_name: str | None = None) -> ImageInfo:
        """Unpack `snapshots/<sha256>.zip` into the cache's build area and run its Makefile.

        The one way every local image is built, by `build`, `submit` and a test pass's re-run.
        """
        archive = self.cache.path(snapshot)
        if not archive.is_file():
            raise InfrastructureError(f"{name}: snapshot {archive} is missing")
        with self._alone(name):
            workdir = self._workdir(name, folder_name)
            extract_zip(archive, workdir)
            self.status(name, f"building from {snapshot}")
            self._make(workdir, ["all", f"SNAPSHOT={snapshot}"])
            return self._image_of(workdir)

    def rebuild(self, name: str, snapshot: str) -> ImageInfo:
        """A test pass's image, from the snapshot the pass recorded for it (a re-run): ours,
        by the Makefile inside it; GitHub's zip of a commit, by the build folder the pass
        carries for it (controller.images.buildfolder)."""
        archive = self.cache.path(snapshot)
        if not archive.is_file():
            raise InfrastructureError(f"{name}: snapshot {archive} is missing")
        if buildfolder.kept_folder(self.cache.root, name).is_dir() or is_github_zip(archive):
            return self.build_github(name, snapshot)
        return self.build_snapshot(name, snapshot)

    def build_github(self, name: str, snapshot: str) -> ImageInfo:
        """GitHub's zip of a commit, unmodified, built offline by the Makefile kept in
        `<cache>/github/<name>/` (copied to the build area, so the kept one stays as the pass
        had it), with the vendored crates packed beside the zip."""
        kept = buildfolder.kept_folder(self.cache.root, name)
        if not kept.is_dir():
            raise InfrastructureError(
                f"{name}: {snapshot} is GitHub's zip of a commit, and this test pass carries no "
                f"github/{name}/ (the Makefile that builds it): a pass from before they were "
                f"bundled; rebuild it with `holepunch-controller build {name}` in a checkout")
        crates = solid.vendor_pack(self.cache.path(snapshot))
        if not crates.is_file():
            raise InfrastructureError(
                f"{name}: no {crates.name} beside {snapshot}: the pass built it with its own "
                f"Dockerfile (build: dockerfile, which needs a registry), so it cannot be rebuilt "
                f"offline; rebuild it with `holepunch-controller build {name}` where one is reachable")
        with self._alone(name):
            work = self.cache.root / "build" / FOLDER_WORK / name
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(kept, work)
            folder = buildfolder.version_folder(work)
            self.status(name, f"building from {snapshot} with github/{name}/"
                              f"{folder.name}/Makefile (offline, {crates.name})")
            self._make(folder, github_rebuild_args(snapshot))
            return self._image_of(folder)

    def build_base(self, folder: Path) -> ImageInfo:
        """The base image: its Makefile keeps the rootfs tarball in the cache (no snapshot zip);
        what test-pass zips store of it is made here once (controller.images.rootfs)."""
        with self._alone("base"):
            self._make(folder, [])
            image = self._image_of(folder)
        tarball = self.cache.path(image.snapshot) if image.snapshot else None
        if tarball is not None and tarball.is_file():
            rootfs.compressed(tarball)
        return image

    def _workdir(self, name: str, folder_name: str | None = None) -> Path:
        """Stable per image, so cargo's and go's caches keyed by path stay warm across builds;
        the last part keeps the source folder's name, which some Makefiles read."""
        return self.cache.root / "build" / "src" / name / (folder_name or name.rsplit("-", 1)[-1])

    def _snapshot_name(self, target: BuildTarget) -> str:
        if target.kind == "github":
            return f"snapshots/{target.commit}.zip"
        return f"snapshots/{source_digest(target.folder)}.zip"

    def _make(self, folder: Path, args: list[str]) -> None:
        command = ["make", "--no-print-directory", "-C", str(folder), f"CACHE_DIR={self.cache.root}",
                   *args]
        if self.output == "terminal":
            result = subprocess.run(command, env=self.env, check=False)
            if result.returncode != 0:
                raise BuildError(f"build failed ({result.returncode}): {' '.join(command)}")
            return
        path = build_log_path(self.cache, getattr(self._local, "name", None) or folder.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = "w" if getattr(self._local, "fresh", True) else "a"
        self._local.fresh = False
        with path.open(mode) as log:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            result = subprocess.run(command, env=self.env, check=False, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise BuildError(f"build failed ({result.returncode}): {' '.join(command)}\n"
                             f"last {TAIL_LINES} lines of {path}:\n{tail(path).rstrip()}")

    def _image_of(self, folder: Path) -> ImageInfo:
        image = read_image_yaml(folder)
        if image is None:
            raise InfrastructureError(f"{folder}/Makefile finished without writing image.yaml")
        return image
