"""The run_test requests the benches send: built images by their image.yaml, one test each."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cluster.models import ImageInfo, TestCase, Transport  # noqa: E402
from cluster.tasks import RunRequest  # noqa: E402
from cluster.yamlio import load_model  # noqa: E402


def image(folder: str) -> ImageInfo:
    return load_model(ImageInfo, REPO / folder / "image.yaml")


def newest_rust() -> ImageInfo:
    newest = sorted((REPO / "impl" / "rust").glob("v*/image.yaml"),
                    key=lambda p: tuple(int(n) for n in p.parent.name[1:].split(".")))[-1]
    return image(str(newest.parent.relative_to(REPO)))


def request(name: str, dialer: ImageInfo, listener: ImageInfo, pass_id: str,
            timeout: int = 120, transport: str = "tcp") -> RunRequest:
    test = TestCase(name=name, dialer=dialer.image_name, listener=listener.image_name,
                    transport=Transport(transport))
    return RunRequest(pass_id=pass_id, test=test, dialer=dialer, listener=listener,
                      router=image("router"), relay=image("rust-relay"), base=image("impl/base"),
                      timeout_seconds=timeout)
