"""xz streams for the large whole parts of a test-pass zip: solid snapshots and the base rootfs.

Why xz and not zstd for these: both are made once (at build time) and read once (by a re-run),
so only the ratio counts. Measured on this project's parts (two cores, 2026-12-07): LZMA2 at
preset 9e behind the x86 branch filter packs js-v3.3's snapshot (its Node.js binary is 125 MB)
to 31.7 MB against zstd -19 --long's 35.3, the base rootfs to 26.6 MB against 29.8 (27.4
without the filter), in about the same time. The filter rewrites the relative addresses of x86
call and jump instructions as absolute ones, which repeat across a binary; on text it changes
next to nothing. Python's own lzma module: nothing to install where a pass is re-run.

A pack records how it was made (`<pack>.recipe` beside it in the cache, never in a zip): a pack
made another way (an older level) is made again instead of being reused as if it were current.
"""

from __future__ import annotations

import lzma
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from cluster.errors import InfrastructureError

FILTERS = ({"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME})
RECIPE = "xz: x86 filter, lzma2 preset 9e\n"
_CHUNK = 1 << 20


def _recipe_file(pack: Path) -> Path:
    return pack.with_name(pack.name + ".recipe")


def current(pack: Path) -> bool:
    """Whether `pack` exists and was made the way this module makes packs now."""
    recipe = _recipe_file(pack)
    return pack.is_file() and recipe.is_file() and recipe.read_text() == RECIPE


def record_recipe(pack: Path) -> None:
    """Note beside a freshly made `pack` how it was made (after it is in place)."""
    _recipe_file(pack).write_text(RECIPE)


@contextmanager
def writer(target: Path) -> Iterator[IO[bytes]]:
    """A stream whose bytes are compressed into `target` (overwritten)."""
    with lzma.open(target, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                   filters=list(FILTERS)) as stream:
        yield stream


@contextmanager
def reader(source: Path, what: str) -> Iterator[IO[bytes]]:
    """`source` decompressed; a damaged or cut pack raises InfrastructureError naming `what`
    (xz's block checks are verified as the stream is read, to its end)."""
    try:
        with lzma.open(source, "rb") as stream:
            yield stream
            while stream.read(_CHUNK):  # to the end, so a damaged tail still fails its check
                pass
    except (lzma.LZMAError, EOFError) as error:
        raise InfrastructureError(f"{what}: {source.name} is damaged ({error})") from error


def compress_file(source: Path, target: Path) -> None:
    with source.open("rb") as src, writer(target) as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def decompress_file(source: Path, target: Path, what: str) -> None:
    with reader(source, what) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)
