"""Delta snapshots: a snapshot travels as its zstd --patch-from difference from another of its
family, and a re-run writes it back byte for byte (real zstd, small crafted snapshots)."""

from __future__ import annotations

import io
import random
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from cluster.cache import Cache, sha256_file
from cluster.errors import EXIT_BAD_INPUT, ConfigError, InfrastructureError
from cluster.models import ImageInfo, Status
from controller.images import delta, solid
from controller.images.solid import restore_solid
from controller.run import rerun as rerun_module
from controller.run.pass_plan import SubmitOptions
from tests.controller.test_solid import snapshot

pytestmark = pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd is not installed")

# Incompressible alone (random text), nearly the same from one version to the next: what
# vendored crates of neighbouring versions look like to zstd.
_RANDOM = random.Random(15)
CRATES = {f"vendor/crate-{i}/src/lib.rs": _RANDOM.randbytes(40_000).hex().encode()
          for i in range(6)}
RELAY, NEW, OLD, OTHER = "a" * 64, "e" * 64, "f" * 64, "d" * 64


def versions(root: Path) -> dict[str, Path]:
    """The relay and two versions of one family, each a little apart from the next."""
    newer = {**CRATES, "vendor/crate-0/src/lib.rs": CRATES["vendor/crate-0/src/lib.rs"] + b"//0.2\n"}
    older = {**newer, "vendor/crate-1/src/lib.rs": b"an older crate\n" * 50}
    return {f"snapshots/{RELAY}.zip": snapshot(root, RELAY, {"src/main.rs": b"relay\n", **CRATES}),
            f"snapshots/{NEW}.zip": snapshot(root, NEW, {"src/main.rs": b"v0.57\n", **newer}),
            f"snapshots/{OLD}.zip": snapshot(root, OLD, {"src/main.rs": b"v0.53\n", **older})}


MEMBERS = [("rust-v0.53", f"snapshots/{OLD}.zip"), ("rust-relay", f"snapshots/{RELAY}.zip"),
           ("rust-v0.57", f"snapshots/{NEW}.zip")]


def unzipped(tmp_path: Path, stored: dict[str, Path], cache: dict[str, Path]) -> Path:
    """snapshots/ of a test pass as re-run.sh finds it after unzip: what the zip stores, and
    each snapshot's .metadata."""
    folder = tmp_path / "pass" / "snapshots"
    folder.mkdir(parents=True)
    for relative, path in stored.items():
        shutil.copyfile(path, folder / Path(relative).name)
    for path in cache.values():
        shutil.copyfile(path.with_name(path.name + ".metadata"), folder / (path.name + ".metadata"))
    return folder


def test_the_plan_chains_each_family_from_its_relay_then_newest_first() -> None:
    members = [("router", "r"), ("base", "rootfs"), ("rust-v0.53", "53"), ("rust-relay", "relay"),
               ("rust-v0.57", "57"), ("rust-v0.52", "52"), ("go-v0.48", "g48"),
               ("go-v0.51", "g51"), ("python-v0.8", "p"), ("js-v3.3", "js")]
    assert delta.plan_deltas(members) == {"57": "relay", "53": "57", "52": "53", "g48": "g51"}
    # no relay of the family: the newest version travels solid; versions compare as numbers
    assert delta.plan_deltas([("rust-v0.9", "9"), ("rust-v0.10", "10"), ("rust-v1.0", "1")]) \
        == {"10": "1", "9": "10"}
    # a relay of another family is not a reference; a go relay heads its own family
    assert delta.plan_deltas([("rust-relay", "relay"), ("go-v0.51", "g51"), ("go-relay", "gr")]) \
        == {"g51": "gr"}
    # one snapshot used by two ids is stored once; a family of one has no delta
    assert delta.plan_deltas([("rust-v0.57", "57"), ("rust-v0.57-copy", "57")]) == {}
    assert delta.plan_deltas(list(reversed(members))) == delta.plan_deltas(members)


def test_a_chain_of_deltas_restores_byte_for_byte(tmp_path: Path) -> None:
    cache = versions(tmp_path)
    stored = delta.stored_files(cache, MEMBERS)
    assert sorted(stored) == sorted([f"snapshots/{RELAY}.tar.xz",
                                     f"snapshots/{NEW}.delta.zst", f"snapshots/{NEW}.delta.yaml",
                                     f"snapshots/{OLD}.delta.zst", f"snapshots/{OLD}.delta.yaml"])
    for name in (NEW, OLD):
        made = stored[f"snapshots/{name}.delta.zst"]
        assert made.parent == cache[f"snapshots/{name}.zip"].parent  # cached beside the snapshot
        assert made.stat().st_size * 10 < solid.packed(cache[f"snapshots/{name}.zip"]).stat().st_size
    manifest = yaml.safe_load(stored[f"snapshots/{OLD}.delta.yaml"].read_text())
    assert (manifest["snapshot"], manifest["reference"]) == (f"{OLD}.zip", f"{NEW}.zip")
    mtime = stored[f"snapshots/{OLD}.delta.zst"].stat().st_mtime_ns
    assert delta.stored_files(cache, MEMBERS) == stored  # made once
    assert stored[f"snapshots/{OLD}.delta.zst"].stat().st_mtime_ns == mtime

    folder = unzipped(tmp_path, stored, cache)
    assert [r.name for r in restore_solid(folder)] == [f"{RELAY}.zip"]
    restored = delta.restore_deltas(folder)
    assert sorted((r.name, r.byte_for_byte, ref) for r, ref in restored) == [
        (f"{NEW}.zip", True, f"{RELAY}.zip"), (f"{OLD}.zip", True, f"{NEW}.zip")]
    for relative, original in cache.items():
        assert sha256_file(folder / Path(relative).name) == sha256_file(original)
    assert delta.restore_deltas(folder) == []  # the zips are there now
    assert not list(folder.glob(".*"))  # no temporary tar left


def test_a_delta_no_smaller_than_the_solid_pack_is_not_stored(tmp_path: Path) -> None:
    cache = versions(tmp_path)
    old, new = cache[f"snapshots/{OLD}.zip"], cache[f"snapshots/{NEW}.zip"]
    made = delta.made(old, new)
    assert made is not None
    # a fake cached delta, as large as the solid pack: the pack is smaller, the pack is stored
    made.write_bytes(b"x" * solid.packed(old).stat().st_size)
    stored = delta.stored_files(cache, MEMBERS)
    assert f"snapshots/{OLD}.tar.xz" in stored and f"snapshots/{OLD}.delta.zst" not in stored
    assert f"snapshots/{NEW}.delta.zst" in stored


def test_a_zip_this_project_did_not_write_gets_no_delta(tmp_path: Path) -> None:
    relay = snapshot(tmp_path, RELAY, CRATES)
    github = tmp_path / "cache" / f"{OTHER}.zip"
    with zipfile.ZipFile(github, "w") as archive:
        archive.writestr("repo-abc/", b"")
    snapshots = {f"snapshots/{RELAY}.zip": relay, f"snapshots/{OTHER}.zip": github}
    assert delta.pass_deltas(snapshots, [("rust-relay", f"snapshots/{RELAY}.zip"),
                                         ("rust-upstream-v0.53", f"snapshots/{OTHER}.zip")]) == {}


def test_a_damaged_delta_is_refused_naming_it_and_leaves_no_zip(tmp_path: Path) -> None:
    cache = versions(tmp_path)
    folder = unzipped(tmp_path, delta.stored_files(cache, MEMBERS), cache)
    restore_solid(folder)
    damaged = folder / f"{OLD}.delta.zst"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(InfrastructureError, match=f"{OLD}.delta.zst"):
        delta.restore_deltas(folder)
    assert not (folder / f"{OLD}.zip").exists() and not list(folder.glob(".*"))


def test_a_missing_reference_is_refused_naming_the_manifest_and_the_reference(tmp_path: Path) -> None:
    cache = versions(tmp_path)
    folder = unzipped(tmp_path, delta.stored_files(cache, MEMBERS), cache)
    (folder / f"{RELAY}.tar.xz").unlink()
    with pytest.raises(ConfigError, match=f"{RELAY}.zip: neither {RELAY}.tar.xz nor") as caught:
        delta.restore_deltas(folder)
    assert caught.value.source == str(folder / f"{NEW}.delta.yaml")
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert not list(folder.glob("*.zip")) and not list(folder.glob(".*"))


def test_a_replaced_reference_is_refused_naming_it(tmp_path: Path) -> None:
    cache = versions(tmp_path)
    folder = unzipped(tmp_path, delta.stored_files(cache, MEMBERS), cache)
    other = snapshot(tmp_path, "9" * 64, {"src/main.rs": b"another relay\n", **CRATES})
    shutil.copyfile(solid.packed(other), folder / f"{RELAY}.tar.xz")
    with pytest.raises(InfrastructureError, match=f"{RELAY}.tar.xz: unpacks to another tar"):
        delta.restore_deltas(folder)


BAD_MANIFESTS = {
    "reference climbs": ("reference", "../../x.zip"),
    "snapshot absolute": ("snapshot", "/etc/passwd.zip"),
    "snapshot of another name": ("snapshot", f"{RELAY}.zip"),
    "reference not a zip": ("reference", "x.sh"),
    "sha256 not hex": ("tarSha256", "x" * 64),
}


@pytest.mark.parametrize("key, value", BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_a_crafted_delta_manifest_is_refused_and_nothing_written(tmp_path: Path, key, value) -> None:
    cache = versions(tmp_path)
    folder = unzipped(tmp_path, delta.stored_files(cache, MEMBERS), cache)
    manifest = folder / f"{OLD}.delta.yaml"
    data = yaml.safe_load(manifest.read_text())
    data[key] = value
    manifest.write_text(yaml.safe_dump(data))
    before = set(folder.iterdir())
    with pytest.raises(ConfigError) as caught:
        delta.restore_deltas(folder)
    assert caught.value.source == str(manifest) and caught.value.exit_code == EXIT_BAD_INPUT
    assert set(folder.iterdir()) == before


class _Stop(Exception):
    """Raised by the fake builder: the re-run got as far as building images."""


def test_a_rerun_from_the_zip_restores_solid_and_delta_snapshots_before_it_builds(
        tmp_path: Path, monkeypatch) -> None:
    """finish_pass writes the zip with the relay solid and two rust versions as deltas; unzipped,
    the re-run writes every snapshot zip back, byte for byte, before its first build."""
    from controller.results.finish import finish_pass
    from tests.controller.test_finish import case, payload, spec_for

    test = case("rust-v0.53", "rust-v0.57")
    spec = spec_for(tmp_path, [test])
    for path in versions(tmp_path / "made").values():  # the cache's layout: snapshots/<sha>.zip
        for each in (path, path.with_name(path.name + ".metadata")):
            shutil.move(each, Path(spec.cache_dir) / "snapshots" / each.name)
    images = {key: ImageInfo(image_id=str(index) * 64, image_name=f"holepunch-{key}",
                             built_at="2026-11-25T09:00:00Z", arch="x86_64", snapshot=snapshot_)
              for index, (key, snapshot_) in enumerate(MEMBERS)}
    spec = spec.model_copy(update={"images": images})
    summary = finish_pass(spec, [payload(test, Status.PASS)])
    with zipfile.ZipFile(summary.test_pass_zip) as archive:
        names = {name.split("/", 1)[1] for name in archive.namelist()}
        archive.extractall(tmp_path / "unzipped")
    assert {f"snapshots/{RELAY}.tar.xz", f"snapshots/{NEW}.delta.zst",
            f"snapshots/{OLD}.delta.zst", f"snapshots/{OLD}.delta.yaml"} <= names
    assert not {name for name in names if name.endswith(".zip") or ".thin." in name}
    folder = tmp_path / "unzipped" / spec.name

    class FakeBuilder:
        def __init__(self, *_args, **_kwargs) -> None:
            pass

        def build_base(self, _folder: Path) -> None:
            raise _Stop

    monkeypatch.setattr(rerun_module, "engine_version", lambda: "fake engine")
    monkeypatch.setattr(rerun_module, "Builder", FakeBuilder)
    said = io.StringIO()
    with pytest.raises(_Stop):
        rerun_module.rerun(folder, SubmitOptions(root=folder), Cache(folder),
                           Console(file=said, width=400))
    assert f"snapshots/{RELAY}.zip: restored from its solid pack (byte for byte)" in said.getvalue()
    assert (f"snapshots/{OLD}.zip: restored from its delta from {NEW}.zip (byte for byte)"
            in said.getvalue())
    for name in (RELAY, NEW, OLD):
        assert sha256_file(folder / "snapshots" / f"{name}.zip") == \
            sha256_file(Path(spec.cache_dir) / "snapshots" / f"{name}.zip")


def test_the_build_makes_the_passes_deltas_once_and_says_so(tmp_path: Path) -> None:
    cache = versions(tmp_path)
    said: list[str] = []
    delta.prepare(cache, MEMBERS, said.append)
    assert said == ["rust-v0.57: making its delta from rust-relay's snapshot for test-pass zips (once)",
                    "rust-v0.53: making its delta from rust-v0.57's snapshot for test-pass zips (once)"]
    assert len(list((tmp_path / "cache").glob("*.from-*.delta.zst"))) == 2
    delta.prepare(cache, MEMBERS, said.append)
    assert len(said) == 2  # made once


class FakeBuilder:
    """A fake Builder: no make, no Docker; every image is 'built' from the snapshot given."""

    def __init__(self, snapshots: dict[str, str]):
        self.snapshots = snapshots

    def __call__(self, cache, log, status, output):
        return self

    def build(self, target):
        from controller.images.build import Built
        image = ImageInfo(image_id="1" * 64, image_name=f"holepunch-{target.name}",
                          built_at="2026-12-03T12:00:00Z", arch="x86_64",
                          snapshot=self.snapshots.get(target.name))
        return Built(target, image, rebuilt=False, seconds=0.0)


def test_resolving_a_passes_images_makes_its_deltas(tmp_path: Path) -> None:
    from cluster.models import ImplsFile
    from controller.images.resolve import resolve_images

    root = tmp_path / "hp"
    (root / "snapshots").mkdir(parents=True)
    for path in versions(tmp_path).values():  # the cache's layout: snapshots/<sha>.zip
        shutil.move(path, root / "snapshots" / path.name)
    impls = ImplsFile.model_validate({"implementations": [
        {"id": "rust-v0.57", "source": {"type": "local", "path": "impl/rust/v0.57"},
         "transports": ["tcp"]}]})
    fake = FakeBuilder({"rust-relay": f"snapshots/{RELAY}.zip", "rust-v0.57": f"snapshots/{NEW}.zip",
                        "base": "rootfs/x.tar"})
    terminal = io.StringIO()
    resolve_images(tmp_path, Cache(root), impls, ["rust-v0.57"], Console(file=terminal, width=200),
                   builder_factory=fake)
    assert [p.name for p in (root / "snapshots").glob("*.delta.zst")] == \
        [f"{NEW}.from-{RELAY}.delta.zst"]
    assert "rust-v0.57: making its delta from rust-relay's snapshot" in terminal.getvalue()
