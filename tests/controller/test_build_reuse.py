"""A fresh clone reuses the image the cache's build area last built from the same snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster.cache import Cache
from cluster.models import ImageInfo, to_yaml_data
from controller.images.build import Builder, BuildTarget, read_image_yaml

IMAGE_ID = "a" * 64


class BuildAttempted(Exception):
    pass


def _builder(cache: Cache, engine_images: set[str]) -> Builder:
    builder = Builder(cache, log=lambda line: None, has_image=engine_images.__contains__)

    def fake_make(folder: Path, args: list[str]) -> None:  # a fake: no make, no Docker
        raise BuildAttempted(args)

    builder._make = fake_make
    return builder


def _checkout(tmp_path: Path) -> BuildTarget:
    folder = tmp_path / "checkout" / "impl" / "go" / "v0.51"
    folder.mkdir(parents=True)
    (folder / "Makefile").write_text("all:\n\ttrue\n")
    (folder / "main.go").write_text("package main\n")
    return BuildTarget("go-v0.51", folder)


def _remember_last_build(builder: Builder, target: BuildTarget, snapshot: str) -> None:
    workdir = builder._workdir(target.name, target.folder.name)
    workdir.mkdir(parents=True)
    image = ImageInfo(image_id=IMAGE_ID, image_name="holepunch-go-v0.51",
                      built_at="2026-11-25T12:00:00Z", arch="x86_64", snapshot=snapshot)
    (workdir / "image.yaml").write_text(yaml.safe_dump(to_yaml_data(image)))


def test_same_snapshot_and_image_in_engine_is_not_rebuilt(tmp_path) -> None:
    cache, target = Cache(tmp_path / "cache"), _checkout(tmp_path)
    builder = _builder(cache, {IMAGE_ID})
    _remember_last_build(builder, target, builder._snapshot_name(target))
    built = builder.build(target)
    assert not built.rebuilt and built.image.image_id == IMAGE_ID
    assert read_image_yaml(target.folder).image_id == IMAGE_ID  # the checkout has it now


@pytest.mark.parametrize("engine_images, snapshot", [
    (set(), None),                       # the engine lost the image
    ({IMAGE_ID}, "snapshots/other.zip"),  # the sources changed since
])
def test_otherwise_it_builds(tmp_path, engine_images, snapshot) -> None:
    cache, target = Cache(tmp_path / "cache"), _checkout(tmp_path)
    builder = _builder(cache, engine_images)
    _remember_last_build(builder, target, snapshot or builder._snapshot_name(target))
    with pytest.raises(BuildAttempted):
        builder.build(target)


def test_an_image_built_on_another_base_is_built_again(tmp_path) -> None:
    cache, target = Cache(tmp_path / "cache"), _checkout(tmp_path)
    builder = _builder(cache, {IMAGE_ID})
    builder.first_layer = {IMAGE_ID: "sha256:old-rootfs"}.get  # a fake engine's answer
    builder.base_layer = "sha256:new-rootfs"  # what building the base just gave
    _remember_last_build(builder, target, builder._snapshot_name(target))
    with pytest.raises(BuildAttempted):
        builder.build(target)
    builder.base_layer = "sha256:old-rootfs"
    assert not builder.build(target).rebuilt
