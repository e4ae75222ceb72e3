"""The zstd command, for the large parts of a test-pass zip (the base rootfs, solid snapshots).

The command, not a Python binding: re-run.sh needs zstd on the re-running machine anyway (the
worker loads cached images through it), and it compresses on every core.
"""

from __future__ import annotations

import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from cluster.errors import InfrastructureError


def _command(args: list[str]) -> list[str]:
    if shutil.which("zstd") is None:
        raise InfrastructureError("zstd is not installed (apt-get install zstd)")
    return ["zstd", "-q", *args]


def _check(process: subprocess.Popen, what: str) -> None:
    stderr = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
    if process.wait() != 0:
        raise InfrastructureError(f"{what} failed: {stderr.strip()[-300:]}")


def run(args: list[str], what: str) -> None:
    result = subprocess.run(_command(args), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InfrastructureError(f"{what} failed: {result.stderr.strip()[-300:]}")


@contextmanager
def writer(target: Path, args: list[str], what: str) -> Iterator[IO[bytes]]:
    """A stream whose bytes zstd compresses into `target` (overwritten)."""
    process = subprocess.Popen(_command([*args, "-f", "-o", str(target)]), stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        yield process.stdin
    except BrokenPipeError:
        _check(process, what)  # zstd stopped reading: say why in its own words
        raise
    except BaseException:
        process.kill()
        process.wait()
        raise
    process.stdin.close()
    _check(process, what)


@contextmanager
def reader(source: Path, args: list[str], what: str) -> Iterator[IO[bytes]]:
    """A stream of `source` decompressed; zstd checks the frame's checksum at its end. A reader
    that fails because zstd did (damaged input) gets zstd's own words."""
    process = subprocess.Popen(_command(["-d", "-c", *args, str(source)]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        yield process.stdout
        process.stdout.read()  # to the end, so a damaged tail still fails the checksum
    except Exception as error:
        zstd_failed = process.poll() not in (None, 0)
        process.kill()
        if zstd_failed:
            _check(process, what)
        process.wait()
        raise error
    except BaseException:
        process.kill()
        process.wait()
        raise
    process.stdout.close()
    _check(process, what)
