"""Images by ID from the cache: a good tarball loads, a tampered one is refused (real engine)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.e2e.worker.harness import built_image, docker_or_skip
from worker.images import ImageFetchError, ImageMismatchError, ensure_image, has_image


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


def _compressed_with_digest(tarball: Path) -> Path:
    """images/<id>.tar -> images/<id>.tar.zst and its digest file, as the controller saves it."""
    from cluster.imagefile import write_digest
    packed = tarball.with_name(tarball.name + ".zst")
    subprocess.run(["zstd", "-q", "-f", "--rm", str(tarball), "-o", str(packed)], check=True)
    write_digest(packed)
    return packed


def test_a_corrupt_tarball_is_fetched_again_then_refused_and_never_loaded(
        saved_image, tmp_path: Path, monkeypatch) -> None:
    """Corrupt at rest in the cache (a byte flipped in the middle): every attempt's digest check
    fails, so nothing is loaded and the error is the infrastructure's. Mended, it loads."""
    import worker.images as images
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path / "run"))
    image_id, tarball = saved_image
    packed = _compressed_with_digest(tarball)
    good = packed.read_bytes()
    middle = len(good) // 2
    packed.write_bytes(good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1:])
    attempts = []
    fetch = images._fetch
    monkeypatch.setattr(images, "_fetch", lambda *a: attempts.append(1) or fetch(*a))
    with pytest.raises(ImageFetchError, match="corrupt.*after 3 attempts"):
        ensure_image(image_id, str(tmp_path))
    assert len(attempts) == images.FETCH_ATTEMPTS and not has_image(image_id)
    packed.with_name(packed.name + ".json").unlink()  # a cache from before digest files
    with pytest.raises(ImageFetchError, match="does not decompress"):
        ensure_image(image_id, str(tmp_path))
    assert not has_image(image_id)
    packed.write_bytes(good)
    assert ensure_image(image_id, str(tmp_path)) is True and has_image(image_id)


def test_tags_inside_a_tarball_never_move_or_add_a_tag(tmp_path: Path, monkeypatch) -> None:
    """A tarball saved with a tag the engine already uses (standing in for holepunch-base, which
    other work on this engine relies on) and a new tag: after the load the old tag still names
    its own image and the new one does not exist; the image itself is there, by ID."""
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path / "run"))
    client = docker_or_skip()
    base = built_image("impl/base")
    victim, new = f"holepunch-e2e-victim:{tmp_path.name}", f"holepunch-e2e-new:{tmp_path.name}"
    dockerfile = (f"FROM sha256:{base.image_id}\n"
                  f"LABEL holepunch.owner=tests holepunch.nonce=tag-{tmp_path.name}\n")
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True)
    image_id = image.id.removeprefix("sha256:")
    (tmp_path / "images").mkdir()
    tarball = tmp_path / "images" / f"{image_id}.tar"
    try:
        image.tag(victim)
        image.tag(new)
        subprocess.run(["docker", "save", "-o", str(tarball), victim, new], check=True)
        for name in (new, victim, f"sha256:{image_id}"):  # its last tag takes the image along
            subprocess.run(["docker", "image", "rm", "-f", name], capture_output=True, check=False)
        assert not has_image(image_id)
        client.api.tag(f"sha256:{base.image_id}", *victim.split(":"))
        assert ensure_image(image_id, str(tmp_path)) is True and has_image(image_id)
        assert client.images.get(victim).id == f"sha256:{base.image_id}", "the tag was moved"
        assert not any(new in (i.tags or []) for i in client.images.list(name="holepunch-e2e-new"))
        assert client.images.get(f"sha256:{image_id}").tags == []
    finally:
        for tag in (victim, new):
            subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)
        subprocess.run(["docker", "image", "rm", "-f", image_id], capture_output=True, check=False)
