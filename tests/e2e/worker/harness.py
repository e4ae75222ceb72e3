"""Helpers of the worker's end-to-end tests: the engine, and the images the checkout built."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cluster.models import ImageInfo
from cluster.yamlio import load_model

REPO = Path(__file__).resolve().parents[3]


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
