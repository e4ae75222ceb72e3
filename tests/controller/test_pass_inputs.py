"""What a pass reads once: impls.yaml is loaded by planning, and the image builds use that."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from cluster.cache import Cache
from cluster.models import ImageInfo, ImplsFile
from controller.images import resolve
from controller.plan import config
from controller.plan.matrix import plan_matrix
from controller.run import submit
from controller.run.pass_plan import SubmitOptions


class FakeBuilder:
    """Stands in for controller.images.build.Builder: every target "built" at once."""

    def __init__(self, cache, log, **_) -> None:
        self.built: list[str] = []

    def build(self, target):
        self.built.append(target.name)
        image = ImageInfo(image_id="e" * 64, image_name=target.name, built_at="t", arch="x86_64")
        return type("Built", (), {"image": image, "rebuilt": False, "seconds": 0.0})()


def test_impls_yaml_is_read_once_per_pass(repo: Path, tmp_path: Path, monkeypatch) -> None:
    loads: list[Path] = []
    real = config.load_model

    def counting(model, path):
        if model is ImplsFile:
            loads.append(path)
        return real(model, path)
    monkeypatch.setattr(config, "load_model", counting)
    monkeypatch.setattr(resolve, "Builder", FakeBuilder)
    cache = Cache(tmp_path / "cache")
    plan = plan_matrix(repo, "rust", None, None, cache)
    options = SubmitOptions(root=repo, kind="rust")
    images = submit.build_images(options, cache, plan.impls, plan.matrix,
                                 Console(file=io.StringIO()))
    assert {"base", "router", "rust-relay", "rust-v0.53", "rust-v0.54"} <= set(images)
    assert loads == [repo / "impls.yaml"]


def test_a_pass_builds_the_go_relay_only_when_its_tests_meet_through_it(repo: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    monkeypatch.setattr(resolve, "Builder", FakeBuilder)
    cache = Cache(tmp_path / "cache")
    for relay, relays in ((None, ["rust-relay"]), ("go", ["go-relay"]),
                          ("rust,go", ["rust-relay", "go-relay"])):
        plan = plan_matrix(repo, "rust", None, None, cache, cli_relay=relay)
        images = submit.build_images(SubmitOptions(root=repo, kind="rust", relay=relay), cache,
                                     plan.impls, plan.matrix, Console(file=io.StringIO()))
        assert [key for key in images if key.endswith("-relay")] == relays, relay
    # an ignore that leaves no test through go builds no go relay, whatever the selection lists
    plan = plan_matrix(repo, "rust", "rust-v0.54 x rust-v0.54", "[relay go]", cache,
                       cli_relay="rust,go")
    assert {t.relay.value for t in plan.matrix.tests} == {"rust"}
    images = submit.build_images(SubmitOptions(root=repo, kind="rust"), cache, plan.impls,
                                 plan.matrix, Console(file=io.StringIO()))
    assert "go-relay" not in images
