"""A `source.type: github` implementation builds from `snapshots/<commit>.zip`.

Seeded by hand, as a user with no route to GitHub would: the build uses the zip (the seed's
layout: the version's Makefile unpacks it) and downloads nothing. Missing, it is fetched as
GitHub's zip of the commit, here from a loopback server standing in for GitHub
(HOLEPUNCH_GITHUB_ARCHIVE; tests/conftest.py's `fake_github`); with no route, the error
says what to put where.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from cluster.cache import Cache
from cluster.errors import InfrastructureError
from controller.images import github_archive
from controller.images.build import Builder, BuildTarget, read_image_yaml

COMMIT = "0123456789abcdef0123456789abcdef01234567"
BASE = "holepunch-base:bookworm"

# The seed's github Makefile, minus the download: unpack the cached zip, build, write image.yaml.
MAKEFILE = """\
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CACHE_DIR ?=
SNAPSHOT ?=
IMAGE := holepunch-test-seeded:latest
all:
\t@test -f '$(CACHE_DIR)/$(SNAPSHOT)' || { echo "missing $(CACHE_DIR)/$(SNAPSHOT)" >&2; exit 1; }
\trm -rf src && mkdir src && cd src && python3 -m zipfile -e '$(CACHE_DIR)/$(SNAPSHOT)' .
\tdocker build -q --label holepunch.owner=tests -t $(IMAGE) \\
\t  src/seeded-$(notdir $(basename $(SNAPSHOT))) >/dev/null
\t{ echo "imageID: $$(docker image inspect -f '{{.Id}}' $(IMAGE) | cut -d: -f2)"; \\
\t  echo "imageName: $(IMAGE)"; echo "builtAt: $$(date -u +%Y-%m-%dT%H:%M:%SZ)"; \\
\t  echo "arch: $$(uname -m)"; echo "snapshot: $(SNAPSHOT)"; } > image.yaml
"""


def _github_zip() -> bytes:
    """What GitHub's archive of a commit looks like: one top folder <repo>-<commit>/. The same
    bytes at every call (a fixed entry time: writestr's default is the clock's, in 2 s steps, so
    two calls could differ)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in ((f"seeded-{COMMIT}/Dockerfile", f"FROM {BASE}\nCOPY hello /hello\n"),
                           (f"seeded-{COMMIT}/hello", "built from the seeded snapshot\n")):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 12, 1, 0, 0, 0)), text)
    return buffer.getvalue()


@pytest.fixture
def target(tmp_path: Path) -> BuildTarget:
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode != 0:
        pytest.skip(f"no {BASE} image (holepunch-controller build builds it)")
    folder = tmp_path / "repo" / "impl" / "seeded" / "v1"
    folder.mkdir(parents=True)
    (folder / "Makefile").write_text(MAKEFILE)
    return BuildTarget("seeded-v1", folder, "github", COMMIT, repo="example/seeded")


def test_builds_from_the_seeded_zip_then_reuses_it(tmp_path: Path, target: BuildTarget) -> None:
    cache = Cache(tmp_path / "cache")
    (cache.folder("snapshots") / f"{COMMIT}.zip").write_bytes(_github_zip())
    builder = Builder(cache, log=lambda line: None)
    try:
        first = builder.build(target)
        assert first.rebuilt
        assert read_image_yaml(target.folder).snapshot == f"snapshots/{COMMIT}.zip"
        shown = subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat", first.image.image_id,
                                "/hello"], capture_output=True, text=True)
        assert shown.stdout == "built from the seeded snapshot\n", shown.stderr
        again = builder.build(target)
        assert not again.rebuilt and again.image.image_id == first.image.image_id
    finally:
        subprocess.run(["docker", "rmi", "-f", "holepunch-test-seeded:latest"], capture_output=True)


def test_a_missing_zip_is_fetched_from_github_once(tmp_path: Path, target: BuildTarget,
                                                   fake_github) -> None:
    cache = Cache(tmp_path / "cache")
    fake_github.routes[f"/example/seeded/archive/{COMMIT}.zip"] = _github_zip()
    builder = Builder(cache, log=lambda line: None)
    try:
        first = builder.build(target)
        assert first.rebuilt and (cache.root / "snapshots" / f"{COMMIT}.zip").read_bytes() == _github_zip()
        shown = subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat", first.image.image_id,
                                "/hello"], capture_output=True, text=True)
        assert shown.stdout == "built from the seeded snapshot\n", shown.stderr
        builder.build(target)
        assert len(fake_github.requests) == 1  # named by its commit: fetched once
    finally:
        subprocess.run(["docker", "rmi", "-f", "holepunch-test-seeded:latest"], capture_output=True)


def test_without_the_zip_or_a_route_it_names_the_file_to_seed(tmp_path: Path, target: BuildTarget,
                                                              monkeypatch) -> None:
    import socket
    with socket.socket() as probe:  # a loopback port nobody listens on: no packet leaves
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv(github_archive.BASE_ENV, f"http://127.0.0.1:{probe.getsockname()[1]}")
    builder = Builder(Cache(tmp_path / "cache"), log=lambda line: None)
    with pytest.raises(InfrastructureError) as error:
        builder.build(target)
    message = str(error.value)
    assert f"snapshots/{COMMIT}.zip" in message and "cannot be downloaded" in message
    assert "git archive --format=zip" in message
