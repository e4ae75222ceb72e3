"""One form of an image ID: bare hex in every file, record and message of ours; the engine's
`sha256:<hex>` only where we hand an ID to Docker or read one from it. No imports: the worker's
start-up path uses it before anything heavy is loaded."""

from __future__ import annotations

PREFIX = "sha256:"


def image_ref(image_id: str) -> str:
    """What the engine calls an image ID: `sha256:<hex>`."""
    return PREFIX + image_id


def bare_image_id(ref: str) -> str:
    """The bare hex of an engine's `sha256:<hex>` (or of bare hex)."""
    return ref.removeprefix(PREFIX)
