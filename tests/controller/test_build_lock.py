"""Two builds of one image on one cache (two checkouts, two CI jobs) never share the build area."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from cluster.cache import Cache
from controller.images.build import Builder, BuildTarget


def test_a_second_build_of_the_same_image_waits_for_the_first(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    inside: list[str] = []
    overlaps: list[str] = []
    lines: list[str] = []

    def fake_build(self: Builder, target: BuildTarget):  # a fake: no make, no Docker
        if inside:
            overlaps.append(target.name)
        inside.append(target.name)
        time.sleep(0.3)
        inside.remove(target.name)

    builders = [Builder(cache, log=lines.append) for _ in range(2)]
    for builder in builders:
        builder._build = fake_build.__get__(builder)
    target = BuildTarget("go-v0.51", tmp_path)
    threads = [threading.Thread(target=b.build, args=(target,)) for b in builders]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(10)
    assert overlaps == []
    assert lines == ["go-v0.51: waiting for another build of it"]


def test_different_images_build_side_by_side(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    with cache.locked("image-go-v0.51"):
        done = threading.Event()
        thread = threading.Thread(target=lambda: (cache.locked("image-rust-v0.57").__enter__(),
                                                  done.set()))
        thread.start()
        assert done.wait(5)


def test_a_build_that_calls_build_snapshot_takes_its_lock_once(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    builder = Builder(cache, log=lambda line: None)
    with builder._alone("go-v0.51"):
        with builder._alone("go-v0.51"):  # would block forever if it locked again
            pass
