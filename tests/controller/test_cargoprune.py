"""Snapshots keep vendored crates that no build for this platform uses only as stubs."""

from __future__ import annotations

import json
from pathlib import Path

from controller.images.cargoprune import stub
from controller.images.snapshots import extract_zip, write_zip


def test_an_unused_vendored_crate_is_zipped_as_a_stub_that_keeps_its_pinned_checksum(
        tmp_path: Path) -> None:
    folder = tmp_path / "crate"
    unused = folder / "vendor" / "windows_x86_64_gnu"
    (unused / "src").mkdir(parents=True)
    (unused / "lib").mkdir()
    (unused / "Cargo.toml").write_text('[package]\nname = "windows_x86_64_gnu"\n'
                                       'version = "0.52.6"\nbuild = "build.rs"\n')
    (unused / ".cargo-checksum.json").write_text('{"files": {"src/lib.rs": "ab"}, "package": "cd"}')
    (unused / "src" / "lib.rs").write_text("pub fn big() {}\n")
    (unused / "lib" / "libwindows.a").write_bytes(b"\0" * 4096)
    (folder / "vendor" / "libc" / "src").mkdir(parents=True)
    (folder / "vendor" / "libc" / "src" / "lib.rs").write_text("pub fn used() {}\n")
    (folder / "Cargo.toml").write_text('[package]\nname = "c"\nversion = "0.1.0"\n')
    stubs = {"vendor/windows_x86_64_gnu": stub(unused)}
    write_zip(folder, tmp_path / "a.zip", stubs)
    extract_zip(tmp_path / "a.zip", tmp_path / "out")
    kept = tmp_path / "out" / "vendor" / "windows_x86_64_gnu"
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*") if p.is_file()) == \
        [".cargo-checksum.json", "Cargo.toml", "build.rs", "src/lib.rs"]
    assert (kept / "src" / "lib.rs").read_text() == ""
    assert json.loads((kept / ".cargo-checksum.json").read_text()) == {"files": {}, "package": "cd"}
    assert (tmp_path / "out" / "vendor" / "libc" / "src" / "lib.rs").read_text() == "pub fn used() {}\n"
    write_zip(folder, tmp_path / "b.zip", stubs)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()  # deterministic
