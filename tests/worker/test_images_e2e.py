"""Images by ID from the cache: a good tarball loads, a tampered one is refused (real engine)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.worker.conftest import built_image, docker_or_skip
from worker.images import ImageFetchError, ImageMismatchError, ensure_image, has_image

pytestmark = pytest.mark.e2e


@pytest.fixture
def saved_image(tmp_path: Path):
    """A small image of our own, saved as images/<id>.tar in a cache dir and removed from the engine."""
    client = docker_or_skip()
    base = built_image("impl/base")
    dockerfile = f"FROM sha256:{base.image_id}\nLABEL holepunch.owner=tests holepunch.nonce={tmp_path.name}\n"
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True)
    image_id = image.id.removeprefix("sha256:")
    (tmp_path / "images").mkdir()
    tarball = tmp_path / "images" / f"{image_id}.tar"
    subprocess.run(["docker", "save", "-o", str(tarball), image_id], check=True)
    client.images.remove(image_id, force=True)
    yield image_id, tarball
    subprocess.run(["docker", "image", "rm", "-f", image_id], capture_output=True, check=False)


def tamper(tarball: Path) -> None:
    """Change the image's config (its ID is the config's sha256) inside the saved tar."""
    with tarfile.open(tarball) as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
    manifest = json.loads(next(data for m, data in members if m.name == "manifest.json"))
    config_name = manifest[0]["Config"]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for member, data in members:
            if member.name == config_name:
                config = json.loads(data)
                config["config"]["Labels"]["holepunch.nonce"] = "tampered"
                data = json.dumps(config).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    tarball.write_bytes(out.getvalue())


def test_fetches_by_id_from_a_cache_directory(saved_image, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path / "run"))
    image_id, _ = saved_image
    assert not has_image(image_id)
    assert ensure_image(image_id, str(tmp_path)) is True
    assert has_image(image_id)
    assert ensure_image(image_id, str(tmp_path)) is False  # present: no second fetch


def test_tampered_tarball_is_refused(saved_image, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path / "run"))
    image_id, tarball = saved_image
    tamper(tarball)
    with pytest.raises(ImageMismatchError, match="refusing to run it"):
        ensure_image(image_id, str(tmp_path))
    assert not has_image(image_id)


def test_missing_image_is_a_fetch_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path / "run"))
    docker_or_skip()
    with pytest.raises(ImageFetchError, match="neither in the engine"):
        ensure_image("0" * 64, str(tmp_path))
