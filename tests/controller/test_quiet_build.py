"""Builds are quiet: make's output goes to a log per image under the cache, the terminal gets
one line per image, and a failed build shows the tail of its log. Independent images build at
once, a bounded number at a time."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console

from cluster.cache import Cache
from cluster.models import ImageInfo, ImplsFile, Relay
from controller.images.build import (
    Builder,
    BuildError,
    BuildTarget,
    Built,
    build_log_path,
    infrastructure_targets,
)
from controller.images.resolve import resolve_images

IMAGE_ID = "b" * 64
NOISY_LINES = 500
IMAGE_YAML = (f"imageID: {IMAGE_ID}\\nimageName: fake\\nbuiltAt: '2026-12-03T12:00:00Z'\\n"
              "arch: x86_64\\n")


def _fake_base(tmp_path: Path, fails: bool) -> Path:
    """A fake base folder: its Makefile prints like a compiler, then fails or writes image.yaml."""
    folder = tmp_path / "fake-base"
    folder.mkdir()
    last = "exit 7" if fails else f"printf '{IMAGE_YAML}' > image.yaml"
    (folder / "Makefile").write_text(
        "all:\n"
        f"\t@for i in $$(seq 1 {NOISY_LINES}); do echo \"compiling crate $$i\"; done\n"
        "\t@echo 'error[E0425]: cannot find value' >&2\n"
        f"\t@{last}\n")
    return folder


def test_a_failed_build_shows_only_its_logs_tail(tmp_path: Path, capfd) -> None:
    cache = Cache(tmp_path / "cache")
    builder = Builder(cache, log=lambda line: None, first_layer=lambda image: None)
    with pytest.raises(BuildError) as caught:
        builder.build(BuildTarget("base", _fake_base(tmp_path, fails=True), kind="base"))
    out, err = capfd.readouterr()
    assert "compiling crate" not in out + err  # nothing of make's output on the terminal
    message = str(caught.value)
    log = build_log_path(cache, "base")
    assert str(log) in message
    assert "error[E0425]: cannot find value" in message
    assert f"compiling crate {NOISY_LINES}\n" in message
    assert "compiling crate 1\n" not in message  # the tail only
    assert log.read_text().count("compiling crate") == NOISY_LINES  # all of it in the log


def test_a_build_that_works_prints_nothing_and_keeps_its_log(tmp_path: Path, capfd) -> None:
    cache = Cache(tmp_path / "cache")
    builder = Builder(cache, log=lambda line: None, first_layer=lambda image: None)
    built = builder.build(BuildTarget("base", _fake_base(tmp_path, fails=False), kind="base"))
    assert built.image.image_id == IMAGE_ID
    out, err = capfd.readouterr()
    assert out + err == ""
    assert build_log_path(cache, "base").read_text().count("compiling crate") == NOISY_LINES


def test_terminal_output_streams_makes_output(tmp_path: Path, capfd) -> None:
    cache = Cache(tmp_path / "cache")
    builder = Builder(cache, log=lambda line: None, first_layer=lambda image: None,
                      output="terminal")
    builder.build(BuildTarget("base", _fake_base(tmp_path, fails=False), kind="base"))
    out, _ = capfd.readouterr()
    assert out.count("compiling crate") == NOISY_LINES


class FakeBuilder:
    """A fake Builder: no make, no Docker; each build waits at a barrier of `together` builds,
    so the test sees how many run at once."""

    def __init__(self, together: int):
        self.barrier = threading.Barrier(together, timeout=2)
        self.status = None

    def __call__(self, cache, log, status, output):
        self.status = status
        return self

    def build(self, target: BuildTarget) -> Built:
        self.status(target.name, "building from snapshots/fake.zip")
        if target.kind != "base":
            self.barrier.wait()  # raises BrokenBarrierError if fewer run at once
        image = ImageInfo(image_id=IMAGE_ID, image_name=f"holepunch-{target.name}",
                          built_at="2026-12-03T12:00:00Z", arch="x86_64")
        return Built(target, image, rebuilt=target.name != "router", seconds=1.0)


IMPLS = ImplsFile.model_validate({"implementations": [
    {"id": "go-v0.51", "source": {"type": "local", "path": "impl/go/v0.51"},
     "transports": ["tcp"]}]})


def test_independent_images_build_at_once_one_line_each(tmp_path: Path) -> None:
    terminal = io.StringIO()
    fake = FakeBuilder(together=3)  # router, relay and go-v0.51 after the base
    told: list[list[str]] = []
    images = resolve_images(tmp_path, Cache(tmp_path / "cache"), IMPLS, ["go-v0.51"],
                            Console(file=terminal, width=120), jobs=3,
                            services_ready=lambda infra: told.append(sorted(infra)),
                            builder_factory=fake)
    assert list(images) == ["base", "router", "rust-relay", "go-v0.51"]
    assert told and {"base", "rust-relay"} <= set(told[0])
    lines = terminal.getvalue().splitlines()
    assert len(lines) == 4, lines  # one line per image, in its final state
    assert "router" in lines[1] and "up to date" in lines[1]
    assert "go-v0.51" in lines[3] and "built, image bbbbbbbbbbbb" in lines[3]


def test_builds_at_once_are_bounded(tmp_path: Path) -> None:
    fake = FakeBuilder(together=3)
    with pytest.raises(threading.BrokenBarrierError):  # two at a time never reach three
        resolve_images(tmp_path, Cache(tmp_path / "cache"), IMPLS, ["go-v0.51"],
                       Console(file=io.StringIO()), jobs=2, builder_factory=fake)


@pytest.mark.parametrize(("relays", "expected"), [
    ((Relay.GO,), ["go-relay"]),
    ((Relay.RUST, Relay.GO), ["rust-relay", "go-relay"]),
    ((Relay.GO, Relay.RUST), ["go-relay", "rust-relay"])])
def test_only_the_relays_asked_for_are_built_and_the_first_starts_the_services(
        tmp_path: Path, relays: tuple[Relay, ...], expected: list[str]) -> None:
    fake = FakeBuilder(together=2 + len(relays))  # router, the relays, go-v0.51
    told: list[list[str]] = []
    images = resolve_images(tmp_path, Cache(tmp_path / "cache"), IMPLS, ["go-v0.51"],
                            Console(file=io.StringIO()), jobs=2 + len(relays),
                            services_ready=lambda infra: told.append(sorted(infra)),
                            builder_factory=fake, relays=relays)
    assert list(images) == ["base", "router", *expected, "go-v0.51"]
    assert told and expected[0] in told[0], told


def test_each_relays_target_is_its_own_folder(tmp_path: Path) -> None:
    targets = infrastructure_targets(tmp_path, (Relay.GO, Relay.RUST, Relay.GO))
    assert [(t.name, t.folder) for t in targets[2:]] == [
        ("go-relay", tmp_path / "go-relay"), ("rust-relay", tmp_path / "rust-relay")]
    assert [t.name for t in infrastructure_targets(tmp_path)] == ["base", "router", "rust-relay"]
