"""Thin snapshots: shared entries stored once in a test-pass zip, snapshots restored byte for byte."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from cluster.cache import sha256_file
from cluster.errors import InfrastructureError
from controller.archive.thin import THIN_MANIFEST, THIN_ZIP, restore_snapshots, thin_snapshots
from controller.images.snapshots import write_zip


def folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


SHARED = {f"vendor/crate-{i}/src/lib.rs": (f"pub fn f{i}() {{}}\n" * 400).encode() for i in range(20)}


@pytest.fixture
def snapshots(tmp_path: Path) -> dict[str, Path]:
    relay = folder(tmp_path / "relay", {"src/main.rs": b"fn main() {}\n", **SHARED})
    rust = folder(tmp_path / "rust", {"src/main.rs": b"fn main() { run() }\n", **SHARED,
                                      "vendor/crate-0/src/lib.rs": b"a newer crate-0\n"})
    go = folder(tmp_path / "go", {"main.go": b"package main\n"})
    found = {}
    for name, source in (("a" * 64, relay), ("b" * 64, rust), ("c" * 64, go)):
        target = tmp_path / f"{name}.zip"
        write_zip(source, target)
        found[f"snapshots/{name}.zip"] = target
    return found


def unpack(pack, into: Path) -> Path:
    into.mkdir()
    for name, data in pack.thin.items():
        (into / Path(name).name).write_bytes(data)
    for name, path in pack.whole.items():
        (into / Path(name).name).write_bytes(path.read_bytes())
    return into


def test_a_later_snapshot_keeps_only_what_no_earlier_one_holds(snapshots) -> None:
    pack = thin_snapshots(snapshots)
    assert set(pack.whole) == {f"snapshots/{'a' * 64}.zip", f"snapshots/{'c' * 64}.zip"}
    thin = f"snapshots/{'b' * 64}{THIN_ZIP}"
    with zipfile.ZipFile(io.BytesIO(pack.thin[thin])) as archive:
        # its own main.rs and its own crate-0: the 19 other crates are the relay's
        assert sorted(archive.namelist()) == ["src/main.rs", "vendor/crate-0/src/lib.rs"]
    assert pack.shared_bytes > 0
    assert f"snapshots/{'b' * 64}{THIN_MANIFEST}" in pack.thin


def test_restored_snapshots_are_byte_for_byte_the_originals(snapshots, tmp_path: Path) -> None:
    folder_ = unpack(thin_snapshots(snapshots), tmp_path / "pass")
    assert restore_snapshots(folder_) == [f"{'b' * 64}.zip"]
    for relative, original in snapshots.items():
        assert sha256_file(folder_ / Path(relative).name) == sha256_file(original)
    assert restore_snapshots(folder_) == []  # already whole: nothing to do


def test_a_damaged_thin_zip_is_refused(snapshots, tmp_path: Path) -> None:
    folder_ = unpack(thin_snapshots(snapshots), tmp_path / "pass")
    thin = folder_ / f"{'b' * 64}{THIN_ZIP}"
    data = bytearray(thin.read_bytes())
    data[46] ^= 0xFF  # inside the first entry's stored bytes (30-byte header, 11-byte name)
    thin.write_bytes(bytes(data))
    with pytest.raises(InfrastructureError, match="CRC|bad"):
        restore_snapshots(folder_)
    assert not (folder_ / f"{'b' * 64}.zip").exists()


def test_a_zip_whose_entries_cannot_be_moved_is_stored_whole(tmp_path: Path) -> None:
    streamed = io.BytesIO()

    class Unseekable(io.RawIOBase):  # zipfile then writes data descriptors, as git archive does
        def writable(self):
            return True

        def write(self, b):
            return streamed.write(b)

    with zipfile.ZipFile(Unseekable(), "w") as archive:
        archive.writestr("vendor/crate-1/src/lib.rs", SHARED["vendor/crate-1/src/lib.rs"])
    path = tmp_path / f"{'d' * 64}.zip"
    path.write_bytes(streamed.getvalue())
    pack = thin_snapshots({f"snapshots/{path.name}": path})
    assert pack.whole == {f"snapshots/{path.name}": path} and not pack.thin
