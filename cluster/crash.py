"""The last line of both CLIs: an exception nobody expected becomes one line and a log file.

A traceback on the terminal reads as a verdict to whoever runs a pass; it is a bug of ours
instead, so it gets its own exit code (EXIT_INTERNAL) and the details go to a file.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from cluster.cache import default_cache_root

LOGS_FOLDER = "logs"
# A URL's user:password (a broker's) is never written out, not even to a local file.
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


_SECRET_OPTION = re.compile(r"--[a-z-]*(auth|password|secret|token)[a-z-]*", re.IGNORECASE)


def redact(text: str) -> str:
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def redacted_command(argv: list[str]) -> str:
    """The command line, with URL credentials and the values of secret-bearing options masked."""
    words: list[str] = []
    for word in argv:
        option, equals, _ = word.partition("=")
        if words and _SECRET_OPTION.fullmatch(words[-1]):
            word = "***"
        elif equals and _SECRET_OPTION.fullmatch(option):
            word = f"{option}=***"
        words.append(word)
    return redact(" ".join(words)).replace("\0", "")


def write_crash_log(prog: str, exc: BaseException, cache_root: Path | None = None) -> Path | None:
    """Write `exc`'s traceback under `<cache>/logs/` (else the temporary folder); None if
    neither can be written."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = redact("".join(traceback.format_exception(exc)))
    header = f"{prog} {redacted_command(sys.argv[1:])}\n"
    for folder in (Path(cache_root or default_cache_root()) / LOGS_FOLDER,
                   Path(tempfile.gettempdir())):
        path = folder / f"{prog}-crash-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
                handle.write(header + text)
            return path
        except OSError:
            continue
    return None


def crash_line(prog: str, exc: BaseException, log: Path | None) -> str:
    """The one line the user sees: what failed, and where the details are."""
    what = redact(f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc)
                  else type(exc).__name__)
    where = f"the traceback is in {log}" if log else "no log file could be written"
    return (f"{prog}: internal error ({what}); {where}. This is a bug in holepunch, "
            f"not a test result: please report it with that file")
