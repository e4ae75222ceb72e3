"""Solid snapshots: a whole snapshot travels as one xz stream and comes back byte for byte."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from cluster.cache import sha256_file
from cluster.errors import InfrastructureError
from cluster.yamlio import dump_yaml
from controller.archive.thin import restore_snapshots, thin_snapshots
from controller.images.cargoprune import stub
from controller.images.snapshots import write_zip
from controller.images.solid import SUFFIX, packed, restore_solid, stored_files

pytestmark = pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd is not installed")

SHARED = {f"vendor/crate-{i}/src/lib.rs": (f"pub fn f{i}() {{}}\n" * 300).encode() for i in range(12)}


def snapshot(root: Path, name: str, files: dict[str, bytes]) -> Path:
    """A snapshot zip as controller.images.snapshots writes it, with an executable, a symlink, a
    stubbed crate, and its .metadata."""
    source = root / f"src-{name}"
    for relative, data in {**files, "run.sh": b"#!/bin/sh\n"}.items():
        path = source / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (source / "run.sh").chmod(0o755)
    os.symlink("run.sh", source / "link")
    unused = source / "vendor" / "windows-sys"
    (unused / "src").mkdir(parents=True)
    (unused / "Cargo.toml").write_text('[package]\nname = "windows-sys"\nversion = "0.52.0"\n')
    (unused / ".cargo-checksum.json").write_text('{"files": {"src/lib.rs": "ab"}, "package": "cd"}')
    (unused / "src" / "lib.rs").write_text("pub fn big() {}\n" * 100)
    target = root / "cache" / f"{name}.zip"
    target.parent.mkdir(exist_ok=True)
    write_zip(source, target, {"vendor/windows-sys": stub(unused)})
    target.with_name(target.name + ".metadata").write_text(dump_yaml({"sha256": sha256_file(target)}))
    return target


def unzipped_pass(tmp_path: Path, stored: dict[str, Path], texts: dict[str, bytes]) -> Path:
    """snapshots/ of a test pass as re-run.sh sees it after unzip."""
    folder = tmp_path / "pass"
    for relative, path in stored.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / relative)
        metadata = path.with_name(path.name.removesuffix(SUFFIX) + ".zip.metadata")
        if metadata.is_file():
            shutil.copyfile(metadata, folder / "snapshots" / metadata.name)
    for relative, data in texts.items():
        (folder / relative).write_bytes(data)
    return folder / "snapshots"


def test_a_snapshot_packs_smaller_and_restores_byte_for_byte(tmp_path: Path) -> None:
    original = snapshot(tmp_path, "a" * 64, SHARED)
    solid = packed(original)
    assert solid is not None and solid.name == f"{'a' * 64}{SUFFIX}"
    assert solid.stat().st_size < original.stat().st_size
    assert packed(original) == solid  # made once
    folder = unzipped_pass(tmp_path, {f"snapshots/{solid.name}": solid}, {})
    restored = restore_solid(folder)
    assert [(r.name, r.byte_for_byte) for r in restored] == [(original.name, True)]
    assert sha256_file(folder / original.name) == sha256_file(original)
    assert restore_solid(folder) == []  # the zip is there now: nothing to do


def test_a_pack_made_another_way_is_made_again(tmp_path: Path) -> None:
    """A pack in the cache from an older recipe (a lower level, another compressor) is not
    taken as current: it is made again, and its recipe noted beside it."""
    from controller.images import xz
    original = snapshot(tmp_path, "a" * 64, SHARED)
    solid = packed(original)
    assert solid is not None
    recipe = solid.with_name(solid.name + ".recipe")
    assert recipe.read_text() == xz.RECIPE
    solid.write_bytes(b"an older pack")
    recipe.write_text("zstd -12\n")
    assert packed(original) == solid and recipe.read_text() == xz.RECIPE
    recipe.unlink()  # made before recipes were noted
    solid.write_bytes(b"an older pack")
    assert packed(original) == solid
    folder = unzipped_pass(tmp_path, {f"snapshots/{solid.name}": solid}, {})
    assert [(r.name, r.byte_for_byte) for r in restore_solid(folder)] == [(original.name, True)]


def test_thin_snapshots_restore_from_a_solid_donor(tmp_path: Path) -> None:
    """The relay's zip is thin against rust's, which travels solid: re-run restores the solid
    one first, then the thin one from it; both come back exactly."""
    relay = snapshot(tmp_path, "a" * 64, {"src/main.rs": b"fn main() {}\n", **SHARED})
    rust = snapshot(tmp_path, "b" * 64, {"src/main.rs": b"fn main() { run() }\n", **SHARED})
    pack = thin_snapshots({f"snapshots/{relay.name}": relay, f"snapshots/{rust.name}": rust})
    stored = stored_files(pack.whole)
    assert sorted(stored) == [f"snapshots/{'a' * 64}{SUFFIX}"]
    folder = unzipped_pass(tmp_path, stored, pack.thin)
    assert [r.name for r in restore_solid(folder)] == [relay.name]
    assert restore_snapshots(folder) == [rust.name]
    for original in (relay, rust):
        assert sha256_file(folder / original.name) == sha256_file(original)


def test_a_zip_this_project_did_not_write_stays_a_zip(tmp_path: Path) -> None:
    github = tmp_path / "c.zip"
    with zipfile.ZipFile(github, "w") as archive:
        archive.writestr("repo-abc/", b"")
        archive.writestr("repo-abc/main.go", b"package main\n")
    assert packed(github) is None
    assert stored_files({"snapshots/c.zip": github}) == {"snapshots/c.zip": github}
    fake = tmp_path / "d.zip"
    fake.write_bytes(b"PK not a zip")
    assert packed(fake) is None


def test_a_damaged_pack_is_refused_and_leaves_no_zip(tmp_path: Path) -> None:
    original = snapshot(tmp_path, "a" * 64, SHARED)
    solid = packed(original)
    folder = unzipped_pass(tmp_path, {f"snapshots/{solid.name}": solid}, {})
    damaged = folder / solid.name
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(InfrastructureError, match=f"{solid.name} is damaged"):
        restore_solid(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted([solid.name, original.name + ".metadata"])


def test_zstd_failing_mid_stream_is_told_in_its_own_words(tmp_path: Path) -> None:
    from controller.images import zstd
    with pytest.raises(InfrastructureError, match="packing x failed .*No such file"):
        with zstd.writer(tmp_path / "missing" / "x.zst", ["-3"], "packing x") as stream:
            for _ in range(200):
                stream.write(b"x" * 65536)


def test_a_github_snapshots_vendor_pack_is_not_taken_for_a_solid_pack(tmp_path: Path) -> None:
    """`<commit>.vendor.tar.zst` (impl/rust/upstream.mk) sits among the solid packs, but its zip
    is GitHub's, beside it: a re-run must not write a `<commit>.vendor.zip` from it."""
    folder = tmp_path / "snapshots"
    folder.mkdir()
    crates = folder / "6348a0be.vendor.tar.zst"
    crates.write_bytes(b"fake vendored crates")  # not even zstd: restore_solid must not open it
    assert restore_solid(folder) == []
    assert sorted(path.name for path in folder.iterdir()) == [crates.name]
