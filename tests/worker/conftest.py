"""Fixtures for the worker's end-to-end tests: a real broker and real images."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from cluster.models import ImageInfo
from cluster.yamlio import load_model

REPO = Path(__file__).resolve().parents[2]


def docker_or_skip():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker engine: {exc}")
    return client


def built_image(folder: str) -> ImageInfo:
    """The image a folder's image.yaml names, if the engine has it; else skip."""
    path = REPO / folder / "image.yaml"
    if not path.is_file():
        pytest.skip(f"{folder} is not built (no image.yaml): holepunch-controller build")
    image = load_model(ImageInfo, path)
    found = subprocess.run(["docker", "image", "inspect", f"sha256:{image.image_id}"],
                           capture_output=True, check=False)
    if found.returncode != 0:
        pytest.skip(f"the engine lacks {folder}'s image {image.image_id[:12]}")
    return image


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory):
    """A real Redis on loopback, for this session only."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    folder = tmp_path_factory.mktemp("broker")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def hang_image():
    """An implementation image whose client never returns: for the timeout test."""
    client = docker_or_skip()
    base = built_image("impl/base")
    dockerfile = (f"FROM sha256:{base.image_id}\n"
                  'ENTRYPOINT ["/usr/local/bin/holepunch-client-init", "sleep", "infinity"]\n')
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True,
                                   labels={"holepunch.owner": "tests"}, tag="holepunch-test-hang")
    yield image.id.removeprefix("sha256:")
    client.images.remove("holepunch-test-hang", force=True)
