"""Delta snapshots: a test-pass zip stores a snapshot as its difference from another of its family.

Versions of one implementation vendor mostly the same dependencies, at other versions: a thin zip
(controller.archive.thin) shares only byte-identical entries, so near-identical crates were
stored again. zstd's --patch-from compresses a snapshot's tar against another snapshot's tar
instead; measured on this project's snapshots (-12): rust-v0.57's tar from rust-relay's is
60 KB, rust-v0.53's from rust-v0.57's 6.2 MB, rust-v0.52's from rust-v0.53's 0.8 MB, go-v0.48's
from go-v0.51's 0.26 MB, where their solid packs weigh 17-18 MB (4.2 for go).

`plan_deltas` decides, from the pass's (id, snapshot) list alone, which snapshot is patched from
which: a family is the id's language prefix (`rust-v0.53`, `rust-relay` -> rust); its members
are ordered relay first, then by version, newest first; each member is patched from the one
before it (a chain: neighbouring versions are the closest, rust-v0.52 is 0.8 MB from rust-v0.53
and 6.6 from the relay). The first member of a family travels solid (controller.images.solid).

`made` writes `<sha>.from-<refsha>.delta.zst` and its manifest `.delta.yaml` once beside the
snapshot in the cache: for the pass about to run when its images are resolved
(controller.images.resolve), else when the pass's zip is written. In the zip they are
`snapshots/<name>.delta.zst` and `<name>.delta.yaml`, used only when smaller than the solid pack.
`restore_deltas` (a re-run, after restore_solid) writes each `<name>.zip` back: the reference's
tar from its pack (or its own delta, along the chain), `zstd -d --patch-from`, the zip written
with the snapshots' own writer, checked against the sha256 its `.metadata` records.

Memory: the delta's window is its tar (up to 2 GiB accepted: --long=31; this project's largest
tar is 192 MB); decompressing holds that window and the reference's tar.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import model_validator

from cluster.cache import atomic_write, sha256_file, written_beside
from cluster.errors import ConfigError, InfrastructureError
from cluster.models import FileName, Sha256, YamlModel
from cluster.yamlio import dump_yaml, load_model
from controller.images import solid, zstd

DELTA = ".delta.zst"
MANIFEST = ".delta.yaml"
# Made once per pair of snapshots, when a pass is about to start: -12 takes 1-5 s a delta on two
# cores; -19 is 10-15 % smaller (7.0 -> 6.0 MB for the rust chain) but 55-60 s each. --long:
# long-distance matching over the reference's whole tar.
COMPRESS = ["-12", "--long=30", "-T0"]
DECOMPRESS = ["--long=31"]  # the window is the snapshot's tar; no more memory than that
_VERSION = re.compile(r"-v(\d+(?:\.\d+)*)$")


class DeltaManifest(YamlModel):
    """`snapshots/<name>.delta.yaml`, read back from a test-pass zip (not trusted): the snapshot
    and its reference are plain names in the same folder."""

    snapshot: FileName              # <name>.zip, written back from <name>.delta.zst
    reference: FileName             # <ref>.zip, whose tar the delta is patched from
    reference_tar_sha256: Sha256
    tar_sha256: Sha256              # of the tar the delta unpacks to

    @model_validator(mode="after")
    def _zips(self) -> DeltaManifest:
        if not (self.snapshot.endswith(".zip") and self.reference.endswith(".zip")):
            raise ValueError("expected snapshot <name>.zip and reference <ref>.zip")
        if self.snapshot == self.reference:
            raise ValueError("a snapshot cannot be patched from itself")
        return self


def family(key: str) -> str | None:
    """The language prefix of an image's id (`rust-v0.53`, `rust-relay` -> rust); None for
    router and base."""
    head, dash, _ = key.partition("-")
    return head if dash and head else None


def _newest_first(key: str) -> tuple[int, tuple[int, ...], str]:
    if key.endswith("-relay"):
        return 0, (), key
    found = _VERSION.search(key)
    if found:
        return 1, tuple(-int(part) for part in found.group(1).split(".")), key
    return 2, (), key


def plan_deltas(members: Iterable[tuple[str, str]]) -> dict[str, str]:
    """{snapshot: the snapshot it is patched from} for a pass's (id, snapshot) pairs, the
    snapshots that can be packed (controller.images.solid.packable) only. Within a family,
    relay first, then newest version first; each member is patched from the one before it."""
    chains: dict[str, list[str]] = {}
    seen: set[str] = set()
    for key, snapshot in sorted(members, key=lambda member: _newest_first(member[0])):
        name = family(key)
        if snapshot in seen:
            continue
        seen.add(snapshot)
        if name is not None:
            chains.setdefault(name, []).append(snapshot)
    return {older: newer for chain in chains.values()
            for newer, older in zip(chain, chain[1:], strict=False)}


def _stem(snapshot: Path | str) -> str:
    return Path(snapshot).name.removesuffix(".zip")


def delta_path(snapshot: Path, reference: Path) -> Path:
    """Where the cache keeps `snapshot`'s delta from `reference`: beside the snapshot."""
    return snapshot.with_name(f"{_stem(snapshot)}.from-{_stem(reference)}{DELTA}")


def manifest_path(delta: Path) -> Path:
    return delta.with_name(delta.name.removesuffix(DELTA) + MANIFEST)


def made(snapshot: Path, reference: Path) -> Path | None:
    """`snapshot`'s delta from `reference` in the cache, made on first use (with its manifest);
    None if either is a zip that cannot be packed."""
    target = delta_path(snapshot, reference)
    manifest = manifest_path(target)
    if target.is_file() and manifest.is_file():
        return target
    own, base = solid.packed(snapshot), solid.packed(reference)
    if own is None or base is None:
        return None
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".delta-") as tmp:
        own_tar, base_tar = Path(tmp) / "snapshot.tar", Path(tmp) / "reference.tar"
        solid.tar_of(own, own_tar)
        solid.tar_of(base, base_tar)
        with written_beside(target) as out:
            zstd.run([*COMPRESS, f"--patch-from={base_tar}", "-f", str(own_tar), "-o", str(out)],
                     f"making {target.name}")
        atomic_write(manifest, dump_yaml({
            "snapshot": snapshot.name, "reference": reference.name,
            "referenceTarSha256": sha256_file(base_tar), "tarSha256": sha256_file(own_tar)}))
    return target


def pass_deltas(snapshots: dict[str, Path], members: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The plan for a pass: `snapshots` maps `snapshots/<name>.zip` to its file (every snapshot
    of the pass), `members` the (id, snapshot) pairs; only snapshots that can be packed count."""
    ours = {name for name, path in snapshots.items() if solid.packable(path)}
    return plan_deltas([(key, snapshot) for key, snapshot in members if snapshot in ours])


def prepare(snapshots: dict[str, Path], members: Iterable[tuple[str, str]],
            log: Callable[[str], None]) -> None:
    """Make the deltas a pass's zip will store, once (at build time: made when the zip is
    written, they would hold up the end of the pass)."""
    members = list(members)
    ids = {snapshot: key for key, snapshot in reversed(members)}
    for name, reference in pass_deltas(snapshots, members).items():
        if not manifest_path(delta_path(snapshots[name], snapshots[reference])).is_file():
            log(f"{ids[name]}: making its delta from {ids[reference]}'s snapshot for test-pass "
                f"zips (once)")
            made(snapshots[name], snapshots[reference])


def stored_files(snapshots: dict[str, Path], members: Iterable[tuple[str, str]]) -> dict[str, Path]:
    """What a test-pass zip stores for the snapshots that can be packed (`snapshots/<name>.zip`
    -> file): a delta and its manifest where the plan has one and it is smaller than the solid
    pack, else the solid pack (controller.images.solid.stored_files)."""
    plan = pass_deltas(snapshots, members)
    files: dict[str, Path] = {}
    for name, path in snapshots.items():
        reference = plan.get(name)
        delta = made(path, snapshots[reference]) if reference is not None else None
        pack = solid.packed(path)
        if delta is not None and pack is not None and delta.stat().st_size < pack.stat().st_size:
            files[name.removesuffix(".zip") + DELTA] = delta
            files[name.removesuffix(".zip") + MANIFEST] = manifest_path(delta)
        else:
            files.update(solid.stored_files({name: path}))
    return files


class _Restorer:
    """The tars of a test pass's snapshots/ folder, each made once, along delta chains."""

    def __init__(self, folder: Path, tmp: Path):
        self.folder, self.tmp = folder, tmp
        self.manifests: dict[str, tuple[Path, DeltaManifest]] = {}
        for path in sorted(folder.glob(f"*{MANIFEST}")):
            manifest = load_model(DeltaManifest, path)
            if f"{_stem(manifest.snapshot)}{MANIFEST}" != path.name:
                raise ConfigError(path, "snapshot", f"{manifest.snapshot} is not the snapshot "
                                  f"{path.name} is named for")
            self.manifests[manifest.snapshot] = (path, manifest)
        self.tars: dict[str, Path] = {}
        self.visiting: set[str] = set()

    def tar(self, name: str, wanted: str | None, asked_by: Path | None) -> Path:
        """The tar of snapshot `name` (checked against `wanted`, the sha256 `asked_by` records)."""
        if name not in self.tars:
            pack = self.folder / (_stem(name) + solid.SUFFIX)
            if pack.is_file():
                target = self.tmp / f"{_stem(name)}.tar"
                solid.tar_of(pack, target)
                source = pack
            elif name in self.manifests:
                target, source = self._patched(name), self.folder / (_stem(name) + DELTA)
            else:
                assert asked_by is not None  # a snapshot asked for itself has a manifest
                raise ConfigError(asked_by, "reference", f"{name}: neither {_stem(name)}"
                                  f"{solid.SUFFIX} nor {_stem(name)}{DELTA} is in {self.folder}")
            self.tars[name] = target
            if wanted is not None and sha256_file(target) != wanted:
                raise InfrastructureError(f"{source}: unpacks to another tar than the one "
                                          f"{asked_by} was made from (damaged or replaced)")
        return self.tars[name]

    def _patched(self, name: str) -> Path:
        path, manifest = self.manifests[name]
        if name in self.visiting:
            raise ConfigError(path, "reference", f"{manifest.reference} leads back to {name}")
        self.visiting.add(name)
        base = self.tar(manifest.reference, manifest.reference_tar_sha256, path)
        delta = self.folder / (_stem(name) + DELTA)
        if not delta.is_file():
            raise ConfigError(path, "snapshot", f"{delta.name} is not in {self.folder}")
        target = self.tmp / f"{_stem(name)}.tar"
        zstd.run(["-d", *DECOMPRESS, f"--patch-from={base}", "-f", str(delta), "-o", str(target)],
                 f"unpacking {delta}")
        if sha256_file(target) != manifest.tar_sha256:
            raise InfrastructureError(f"{delta}: unpacks to another tar than {path} records")
        self.visiting.discard(name)
        return target


def restore_deltas(folder: Path) -> list[tuple[solid.Restored, str]]:
    """Write `<name>.zip` for every `<name>.delta.yaml` in a test pass's snapshots/ folder that
    has no zip beside it yet; returns each restored and the reference it was patched from."""
    if not any(folder.glob(f"*{MANIFEST}")):
        return []
    restored = []
    with tempfile.TemporaryDirectory(dir=folder, prefix=".delta-") as tmp:
        restorer = _Restorer(folder, Path(tmp))
        for name, (path, manifest) in sorted(restorer.manifests.items()):
            snapshot = folder / name
            if snapshot.is_file():
                continue
            tar = restorer.tar(name, manifest.tar_sha256, path)
            solid.zip_from_tar(tar, snapshot, folder / (_stem(name) + DELTA))
            restored.append((solid.Restored(name, solid.byte_for_byte(snapshot)),
                             manifest.reference))
    return restored
