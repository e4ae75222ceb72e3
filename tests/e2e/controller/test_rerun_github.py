"""A test pass with a github source re-run offline from its zip alone: rust-libp2p's own
hole-punch client (impls.yaml `rust-upstream-head`, GitHub's unmodified tree at a commit).

One real pass (rust-v0.57 dials, rust-upstream-head listens, tcp) on the embedded default; its
zip is unzipped, the upstream image is removed from the engine, and `re-run.sh` runs with every
package registry pointed at a loopback sink: the image must be rebuilt from GitHub's zip by the
Makefile the zip carries (github/rust-upstream-head/: the version folder and ../upstream.mk),
offline from the vendored crates beside the zip, and the test pass again. The removed image is
loaded back afterwards. The re-run compiles rust-libp2p from scratch: the whole test took
5 min 18 s on two cores here.

Skipped unless the machine has the rust-libp2p snapshot (GitHub's zip of the commit in the
cache's snapshots/, with its vendored crates) and the image built from it
(`holepunch-controller build rust-upstream-head`).
Run: `flock /tmp/holepunch-e2e.lock .venv/bin/python -m pytest tests/e2e/controller/test_rerun_github.py`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cluster.cache import default_cache_root
from tests.e2e.controller.test_rerun import Sink, _tags, docker, image_id_of
from tests.e2e.controller.test_submit import (
    CONTROLLER,
    REPO,
    embedded_redis_running,
    engine_or_skip,
    leftovers,
)

UPSTREAM = "rust-upstream-head"
COMMIT = "6348a0be4aeb5b48eecf17a5d0aae15ff8239984"
ONLY = f"rust-v0.57 x {UPSTREAM} (tcp)"  # upstream listens: its dialer has a known Redis bug
PASSED = ("pass", "flaky")


def _upstream_image_or_skip() -> str:
    snapshots = default_cache_root() / "snapshots"
    for needed in (f"{COMMIT}.zip", f"{COMMIT}.vendor.tar.zst"):
        if not (snapshots / needed).is_file():
            pytest.skip(f"no rust-libp2p snapshot: {snapshots / needed} is missing (git archive "
                        f"--format=zip --prefix=rust-libp2p-{COMMIT}/ {COMMIT} in a clone of "
                        f"libp2p/rust-libp2p, then holepunch-controller build {UPSTREAM})")
    image_yaml = REPO / "impl" / "rust" / "upstream-head" / "image.yaml"
    image_id = yaml.safe_load(image_yaml.read_text())["imageID"] if image_yaml.is_file() else None
    if not image_id or image_id_of(image_id) is None:
        pytest.skip(f"impl/rust/upstream-head: not built (holepunch-controller build {UPSTREAM})")
    return image_id


@pytest.fixture(scope="module")
def github_pass(tmp_path_factory):
    engine_or_skip()
    _upstream_image_or_skip()
    out = tmp_path_factory.mktemp("github-pass")
    run = subprocess.run([CONTROLLER, "submit", "--root", str(REPO), "-o", str(out),
                          "--test-filter", ONLY, "--test-ignore", "", "--retries", "1"],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stderr[-4000:]
    return out, run


def test_rerun_sh_rebuilds_the_github_image_offline_and_passes_again(github_pass,
                                                                     tmp_path: Path) -> None:
    out, run = github_pass
    zip_path = next(line.removeprefix("test pass: ").strip() for line in run.stderr.splitlines()
                    if line.startswith("test pass: "))
    subprocess.run(["unzip", "-q", zip_path, "-d", str(tmp_path)], check=True)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    # what builds GitHub's tree travels with it, as the checkout has it
    kept = folder / "github" / UPSTREAM
    for name in ("upstream-head/Makefile", "upstream-head/Dockerfile"):
        assert (kept / name).read_bytes() == (REPO / "impl" / "rust" / name).read_bytes()
    assert (kept / "upstream.mk").read_bytes() == (REPO / "impl/rust/upstream.mk").read_bytes()
    assert (folder / "snapshots" / f"{COMMIT}.vendor.tar.zst").is_file()
    images = yaml.safe_load((folder / "images.yaml").read_text())
    removed_id = images[UPSTREAM]["imageID"]
    assert images[UPSTREAM]["snapshot"] == f"snapshots/{COMMIT}.zip"

    saved = tmp_path / "saved-image.tar"
    tags = _tags(removed_id)
    tag = f"holepunch-{UPSTREAM}:latest"
    docker("save", "-o", str(saved), removed_id)
    sink = Sink()
    rebuilt = None
    try:
        docker("rmi", "-f", removed_id)
        assert image_id_of(removed_id) is None
        rerun = subprocess.run(["bash", str(folder / "re-run.sh")], capture_output=True,
                               text=True, timeout=3600, cwd=tmp_path, env=sink.env())
        rebuilt = image_id_of(tag)
    finally:
        sink.close()
        docker("load", "-q", "-i", str(saved))
        for name in tags:
            docker("tag", removed_id, name)
        if rebuilt and rebuilt != removed_id and not set(_tags(rebuilt)) - {tag}:
            docker("rmi", rebuilt, check=False)
        saved.unlink(missing_ok=True)

    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-6000:]
    assert sink.connections == 0, "the offline re-run connected to a package registry"
    assert (f"{UPSTREAM}: building from snapshots/{COMMIT}.zip with github/{UPSTREAM}/"
            f"upstream-head/Makefile (offline, {COMMIT}.vendor.tar.zst)") in rerun.stderr
    assert "rust-v0.57: the engine has image" in rerun.stderr  # only the removed one is rebuilt
    assert rebuilt, f"the re-run tagged no {tag}"
    (new_out,) = folder.glob("rerun-*")
    again = yaml.safe_load((new_out / "results.yaml").read_text())
    assert [t["name"] for t in again["tests"]] == [ONLY]
    assert all(t["status"] in PASSED for t in again["tests"]), again["tests"]
    assert again["tests"][0]["listener"]["imageID"] == rebuilt
    assert not leftovers() and not embedded_redis_running()
    assert image_id_of(removed_id)  # loaded back for the rest of the suite
    shutil.rmtree(folder, ignore_errors=True)
