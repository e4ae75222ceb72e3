"""Image downloads are checked and retried before anything is loaded; tarballs cannot tag.

Fakes: a local http.server on 127.0.0.1 that can cut a download short (the cache server's
stand-in), and a fake engine (has_image, docker load) for the retry logic. The real engine's
side is in tests/e2e/worker/test_images.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import worker.images as images
from cluster.imagefile import write_digest
from worker.images import ImageFetchError, ensure_image, strip_tags

IMAGE_ID = "ab" * 32
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class FakeCacheServer(SimpleHTTPRequestHandler):
    """Serves a folder; the first `cut` downloads of a tarball stop halfway."""

    cut = 0
    tarball_requests = 0

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.endswith((".tar.zst", ".tar")):
            type(self).tarball_requests += 1
            if type(self).cut > 0:
                type(self).cut -= 1
                path = Path(self.translate_path(self.path))
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                return
        super().do_GET()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    folder = tmp_path / "cache"
    (folder / "images").mkdir(parents=True)
    tarball = folder / "images" / f"{IMAGE_ID}.tar.zst"
    tarball.write_bytes(PAYLOAD)
    write_digest(tarball)
    return folder


@pytest.fixture
def server(cache: Path):
    handler = type("Handler", (FakeCacheServer,), {"cut": 0, "tarball_requests": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(cache)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def test_a_whole_download_is_checked_and_kept(server, tmp_path: Path) -> None:
    url, _ = server
    got = images._fetch(IMAGE_ID, url, tmp_path)
    assert got.read_bytes() == PAYLOAD


def test_a_download_cut_short_is_detected(server, tmp_path: Path) -> None:
    url, handler = server
    handler.cut = 1
    with pytest.raises(ImageFetchError, match=r"truncated \(524288 of 1048576 bytes\)"):
        images._fetch(IMAGE_ID, url, tmp_path)


def test_a_corrupt_tarball_of_the_right_length_is_detected(server, cache: Path, tmp_path: Path) -> None:
    url, _ = server
    tarball = cache / "images" / f"{IMAGE_ID}.tar.zst"
    tarball.write_bytes(b"\xff" + PAYLOAD[1:])  # the digest file still names the good bytes
    with pytest.raises(ImageFetchError, match="corrupt"):
        images._fetch(IMAGE_ID, url, tmp_path)
    with pytest.raises(ImageFetchError, match="corrupt"):  # a cache folder as the source too
        images._fetch(IMAGE_ID, str(cache), tmp_path)


def test_a_tarball_truncated_at_rest_is_detected_by_its_digest(server, cache: Path, tmp_path: Path) -> None:
    """Content-Length matches what the server has; only the digest file knows it is short."""
    url, _ = server
    (cache / "images" / f"{IMAGE_ID}.tar.zst").write_bytes(PAYLOAD[:1000])
    with pytest.raises(ImageFetchError, match="1000 bytes, its digest file says 1048576"):
        images._fetch(IMAGE_ID, url, tmp_path)


class FakeEngine:
    """has_image / docker load / the engine's image list, in memory."""

    def __init__(self):
        self.images: set[str] = set()
        self.loads: list[bytes] = []

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(images, "has_image", lambda image_id: image_id in self.images)
        monkeypatch.setattr(images, "_engine_images", lambda: ({}, set(self.images)))
        monkeypatch.setattr(images, "_load", self.load)
        monkeypatch.setattr(images.time, "sleep", lambda seconds: None)

    def load(self, tarball: Path):
        self.loads.append(tarball.read_bytes())
        self.images.add(IMAGE_ID)
        return [IMAGE_ID], []


def test_a_cut_download_is_fetched_again_and_then_loads(server, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path / "run"))
    url, handler = server
    handler.cut = images.FETCH_ATTEMPTS - 1
    engine = FakeEngine()
    engine.install(monkeypatch)
    assert ensure_image(IMAGE_ID, url) is True
    assert handler.tarball_requests == images.FETCH_ATTEMPTS
    assert engine.loads == [PAYLOAD], "only the whole, checked download was loaded"


def test_a_download_that_stays_bad_is_an_infrastructure_error_after_a_bound(
        server, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOLEPUNCH_RUN_DIR", str(tmp_path / "run"))
    url, handler = server
    handler.cut = 100
    engine = FakeEngine()
    engine.install(monkeypatch)
    with pytest.raises(ImageFetchError, match=f"after {images.FETCH_ATTEMPTS} attempts") as raised:
        ensure_image(IMAGE_ID, url)
    assert raised.value.exit_code == 3  # InfrastructureError: the task records it as such
    assert handler.tarball_requests == images.FETCH_ATTEMPTS
    assert engine.loads == []


def _saved(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_tags_inside_a_tarball_are_stripped_and_everything_else_kept() -> None:
    layer = b"layer bytes" * 1000
    config = json.dumps({"config": {}}).encode()
    manifest = [{"Config": "cfg.json", "RepoTags": ["holepunch-base:bookworm", "evil:latest"],
                 "Layers": ["l/layer.tar"]}]
    index = {"manifests": [{"digest": "sha256:" + "0" * 64, "annotations": {
        "io.containerd.image.name": "docker.io/library/holepunch-base:bookworm",
        "org.opencontainers.image.ref.name": "bookworm", "other": "kept"}}]}
    original = _saved({"l/layer.tar": layer, "cfg.json": config,
                       "manifest.json": json.dumps(manifest).encode(),
                       "index.json": json.dumps(index).encode(),
                       "repositories": json.dumps({"holepunch-base": {"bookworm": "x"}}).encode()})
    out = io.BytesIO()
    strip_tags(io.BytesIO(original), out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
        read = {name: tar.extractfile(name).read() for name in names}
    assert "repositories" not in names
    assert json.loads(read["manifest.json"])[0]["RepoTags"] is None
    assert json.loads(read["manifest.json"])[0]["Layers"] == ["l/layer.tar"]
    assert json.loads(read["index.json"])["manifests"][0]["annotations"] == {"other": "kept"}
    assert hashlib.sha256(read["l/layer.tar"]).digest() == hashlib.sha256(layer).digest()
    assert read["cfg.json"] == config
