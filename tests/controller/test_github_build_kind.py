"""A github source's `build` (impls.yaml) reaches its Makefile: `offline` vendors first, then
builds with BUILD and DOCKERFILE; a source without `build` keeps the seed's one `make all`."""

from __future__ import annotations

from pathlib import Path

import yaml

from cluster.cache import Cache
from cluster.models import ImplsFile
from controller.images.build import Builder, implementation_targets

COMMIT = "6348a0be4aeb5b48eecf17a5d0aae15ff8239984"


def _impls(build: str | None) -> ImplsFile:
    source = {"type": "github", "repo": "libp2p/rust-libp2p", "commit": COMMIT,
              "path": "impl/rust/upstream-head", "dockerfile": "hole-punching-tests/Dockerfile"}
    if build:
        source["build"] = build
    return ImplsFile.model_validate({"implementations": [
        {"id": "rust-upstream-head", "contract": "upstream", "source": source,
         "transports": ["tcp"]}]})


def _makes(tmp_path: Path, build: str | None) -> list[list[str]]:
    cache = Cache(tmp_path / "cache")
    (cache.folder("snapshots") / f"{COMMIT}.zip").write_bytes(b"seeded")
    (target,) = implementation_targets(tmp_path, _impls(build), ["rust-upstream-head"])
    target.folder.mkdir(parents=True)
    (target.folder / "Makefile").write_text("all:\n")  # kept for re-runs (buildfolder)
    calls: list[list[str]] = []

    def fake_make(folder: Path, args: list[str]) -> None:  # a fake: records, writes image.yaml
        calls.append(args)
        (folder / "image.yaml").write_text(yaml.safe_dump({
            "imageID": "b" * 64, "imageName": "x", "builtAt": "2026-12-03T13:00:00Z",
            "arch": "x86_64", "snapshot": f"snapshots/{COMMIT}.zip"}))

    builder = Builder(cache, log=lambda line: None, has_image=lambda image: False)
    builder._make = fake_make
    builder.build(target)
    return calls


def test_offline_vendors_then_builds_with_how(tmp_path: Path) -> None:
    snapshot = f"SNAPSHOT=snapshots/{COMMIT}.zip"
    assert _makes(tmp_path, "offline") == [
        ["vendor", snapshot],
        ["all", snapshot, "BUILD=offline", "DOCKERFILE=hole-punching-tests/Dockerfile"]]


def test_own_dockerfile_is_one_make(tmp_path: Path) -> None:
    assert _makes(tmp_path, "dockerfile") == [
        ["all", f"SNAPSHOT=snapshots/{COMMIT}.zip", "BUILD=dockerfile",
         "DOCKERFILE=hole-punching-tests/Dockerfile"]]


def test_without_build_the_seeds_makefile_decides(tmp_path: Path) -> None:
    assert _makes(tmp_path, None) == [["all", f"SNAPSHOT=snapshots/{COMMIT}.zip"]]


def _up_to_date_makes(tmp_path: Path, build: str, packed: bool) -> list[list[str]]:
    """An image already built (image.yaml names this snapshot, the engine has it)."""
    cache = Cache(tmp_path / "cache")
    snapshots = cache.folder("snapshots")
    (snapshots / f"{COMMIT}.zip").write_bytes(b"seeded")
    if packed:
        (snapshots / f"{COMMIT}.vendor.tar.zst").write_bytes(b"fake pack")
    (target,) = implementation_targets(tmp_path, _impls(build), ["rust-upstream-head"])
    target.folder.mkdir(parents=True)
    (target.folder / "Makefile").write_text("all:\n")  # kept for re-runs (buildfolder)
    (target.folder / "image.yaml").write_text(yaml.safe_dump({
        "imageID": "b" * 64, "imageName": "x", "builtAt": "2026-12-03T13:00:00Z",
        "arch": "x86_64", "snapshot": f"snapshots/{COMMIT}.zip"}))
    calls: list[list[str]] = []
    builder = Builder(cache, log=lambda line: None, has_image=lambda image: True)
    builder._make = lambda folder, args: calls.append(args)  # a fake: records only
    assert builder.build(target).rebuilt is False
    return calls


def test_an_up_to_date_offline_image_packs_its_vendored_crates_once(tmp_path: Path) -> None:
    """Built before upstream.mk packed the vendored crates: its `vendor` target packs them, so
    test-pass zips carry them; once the pack is there, nothing runs."""
    assert _up_to_date_makes(tmp_path / "a", "offline", packed=False) == [
        ["vendor", f"SNAPSHOT=snapshots/{COMMIT}.zip"]]
    assert _up_to_date_makes(tmp_path / "b", "offline", packed=True) == []
    assert _up_to_date_makes(tmp_path / "c", "dockerfile", packed=False) == []
