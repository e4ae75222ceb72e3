"""impl/rust/upstream.mk's `vendor`, run for real with make against a fake cargo: it packs the
vendored crates once beside the snapshot (`snapshots/<commit>.vendor.tar.zst`), and where the
vendored crates are missing it unpacks that pack instead of calling cargo (a re-run, offline)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

COMMIT = "6348a0be4aeb5b48eecf17a5d0aae15ff8239984"
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("make", "tar", "zstd")), reason="needs make, tar, zstd")

# A fake cargo, on CARGO=: `cargo vendor ... DIR` writes one small crate into DIR and logs the
# call; with FAKE_CARGO_FAILS set it logs and fails, as cargo would with no network.
FAKE_CARGO = """#!/usr/bin/env bash
set -eu
echo "$*" >> "$FAKE_CARGO_LOG"
if [ -n "${FAKE_CARGO_FAILS:-}" ]; then echo "fake cargo: no network" >&2; exit 101; fi
[ "$1" = vendor ] || exit 2
dir="${@: -1}"
mkdir -p "$dir/fake-crate-1.0.0/src"
printf '[package]\\nname = "fake-crate"\\nversion = "1.0.0"\\n' > "$dir/fake-crate-1.0.0/Cargo.toml"
echo 'pub fn f() {}' > "$dir/fake-crate-1.0.0/src/lib.rs"
echo '{"files":{},"package":"00"}' > "$dir/fake-crate-1.0.0/.cargo-checksum.json"
"""


def _setup(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """The version folder and upstream.mk copied out of the repository (nothing is written into
    it), a cache with GitHub's zip of the commit, and the fake cargo."""
    folder = tmp_path / "rust" / "upstream-head"
    folder.mkdir(parents=True)
    shutil.copy(REPO / "impl/rust/upstream-head/Makefile", folder / "Makefile")
    shutil.copy(REPO / "impl/rust/upstream.mk", tmp_path / "rust" / "upstream.mk")
    cache = tmp_path / "cache"
    (cache / "snapshots").mkdir(parents=True)
    with zipfile.ZipFile(cache / "snapshots" / f"{COMMIT}.zip", "w") as archive:
        archive.writestr(f"rust-libp2p-{COMMIT}/Cargo.toml", "[workspace]\n")
        archive.writestr(f"rust-libp2p-{COMMIT}/Cargo.lock", "version = 3\n")
    cargo = tmp_path / "fake-cargo"
    cargo.write_text(FAKE_CARGO)
    cargo.chmod(0o755)
    env = {**os.environ, "FAKE_CARGO_LOG": str(tmp_path / "cargo-calls.log")}
    env.pop("FAKE_CARGO_FAILS", None)
    env.pop("HOLEPUNCH_CACHE", None)
    return folder, cache, env


def _vendor(folder: Path, cache: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(folder), "vendor", f"CACHE_DIR={cache}",
         f"CARGO={folder.parents[1] / 'fake-cargo'}", f"SNAPSHOT=snapshots/{COMMIT}.zip"],
        env=env, capture_output=True, text=True, check=False)


def _members(pack: Path) -> list[tarfile.TarInfo]:
    tar_bytes = subprocess.run(["zstd", "-q", "-d", "--long=27", "-c", str(pack)],
                               capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        return tar.getmembers()


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "cargo-calls.log"
    return log.read_text().splitlines() if log.is_file() else []


def test_vendor_packs_the_crates_once_beside_the_snapshot(tmp_path: Path) -> None:
    folder, cache, env = _setup(tmp_path)
    snapshot = (cache / "snapshots" / f"{COMMIT}.zip").read_bytes()
    result = _vendor(folder, cache, env)
    assert result.returncode == 0, result.stderr
    assert len(_calls(tmp_path)) == 1 and _calls(tmp_path)[0].startswith("vendor --locked")
    pack = cache / "snapshots" / f"{COMMIT}.vendor.tar.zst"
    assert pack.is_file()
    members = _members(pack)
    names = sorted(member.name for member in members if member.isfile())
    assert names == ["./fake-crate-1.0.0/.cargo-checksum.json", "./fake-crate-1.0.0/Cargo.toml",
                     "./fake-crate-1.0.0/src/lib.rs"]  # not the .complete stamp
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname for m in members)
    assert (cache / "snapshots" / f"{COMMIT}.zip").read_bytes() == snapshot  # never changed
    assert sorted(path.name for path in folder.iterdir()) == ["Makefile"]  # the folder neither

    # The same crates give the same bytes, whatever their files' times.
    first = pack.read_bytes()
    crate = cache / "build" / "cargo-vendor" / COMMIT / "fake-crate-1.0.0" / "src" / "lib.rs"
    os.utime(crate, (1_700_000_000, 1_700_000_000))
    pack.unlink()
    assert _vendor(folder, cache, env).returncode == 0
    assert pack.read_bytes() == first
    assert len(_calls(tmp_path)) == 1  # the vendored crates were there: cargo not asked again


def test_without_vendored_crates_the_pack_restores_them_and_cargo_is_not_called(
        tmp_path: Path) -> None:
    folder, cache, env = _setup(tmp_path)
    assert _vendor(folder, cache, env).returncode == 0
    vendor = cache / "build" / "cargo-vendor" / COMMIT
    before = {path.relative_to(vendor): path.read_bytes() for path in vendor.rglob("*")
              if path.is_file()}
    pack = cache / "snapshots" / f"{COMMIT}.vendor.tar.zst"
    packed = pack.read_bytes()
    shutil.rmtree(vendor)
    shutil.rmtree(cache / "build" / "src")  # a re-run's cache: the unzipped pass, nothing built

    result = _vendor(folder, cache, {**env, "FAKE_CARGO_FAILS": "1"})
    assert result.returncode == 0, result.stderr
    assert len(_calls(tmp_path)) == 1  # only the first run's: no cargo call, no network
    after = {path.relative_to(vendor): path.read_bytes() for path in vendor.rglob("*")
             if path.is_file()}
    assert after == before  # the .complete stamp included
    assert pack.read_bytes() == packed  # unpacking does not pack again


def test_without_a_pack_a_failing_cargo_fails_the_vendor_step(tmp_path: Path) -> None:
    folder, cache, env = _setup(tmp_path)
    result = _vendor(folder, cache, {**env, "FAKE_CARGO_FAILS": "1"})
    assert result.returncode != 0 and "no network" in result.stderr
    assert not (cache / "snapshots" / f"{COMMIT}.vendor.tar.zst").exists()
    assert not (cache / "build" / "cargo-vendor" / COMMIT).exists()
