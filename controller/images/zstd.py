"""The zstd command, for the large parts of a test-pass zip (the base rootfs, solid snapshots).

The command, not a Python binding: re-run.sh needs zstd on the re-running machine anyway (the
worker loads cached images through it), and it compresses on every core.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO

from cluster.errors import InfrastructureError


def _command(args: list[str]) -> list[str]:
    if shutil.which("zstd") is None:
        raise InfrastructureError("zstd is not installed (apt-get install zstd)")
    return ["zstd", "-q", *args]


def _error(what: str, returncode: int, stderr: str) -> InfrastructureError:
    """zstd's own complaint (its "zstd: ..." lines; a crash dump after them is left out)."""
    said = [line for line in stderr.splitlines() if line.startswith("zstd:")]
    words = "; ".join(said)[:300] if said else stderr.strip()[-300:]
    return InfrastructureError(f"{what} failed (zstd exit {returncode}): {words}")


def _check(process: subprocess.Popen, what: str) -> None:
    stderr = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
    if process.wait() != 0:
        raise _error(what, process.returncode, stderr)


def run(args: list[str], what: str) -> None:
    result = subprocess.run(_command(args), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise _error(what, result.returncode, result.stderr)


def _failed(process: subprocess.Popen) -> bool:
    """Whether zstd has stopped, or stops at once, with an error (damaged input, a full disk)."""
    try:
        return process.wait(timeout=0.2) != 0
    except subprocess.TimeoutExpired:
        return False


@contextmanager
def _piped(process: subprocess.Popen, stream: IO[bytes], what: str,
           drain: bool = False) -> Iterator[IO[bytes]]:
    """Hand out the pipe to zstd; an error there that zstd caused is told in zstd's words."""
    try:
        yield stream
        if drain:
            stream.read()  # to the end, so a damaged tail still fails the checksum
    except BaseException as error:
        if isinstance(error, Exception) and _failed(process):
            _check(process, what)
        process.kill()
        process.wait()
        raise
    stream.close()
    _check(process, what)


def writer(target: Path, args: list[str], what: str) -> AbstractContextManager[IO[bytes]]:
    """A stream whose bytes zstd compresses into `target` (overwritten)."""
    process = subprocess.Popen(_command([*args, "-f", "-o", str(target)]), stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdin is not None  # stdin=PIPE
    return _piped(process, process.stdin, what)


def reader(source: Path, args: list[str], what: str) -> AbstractContextManager[IO[bytes]]:
    """A stream of `source` decompressed; zstd checks the frame's checksum at its end."""
    process = subprocess.Popen(_command(["-d", "-c", *args, str(source)]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None  # stdout=PIPE
    return _piped(process, process.stdout, what, drain=True)
