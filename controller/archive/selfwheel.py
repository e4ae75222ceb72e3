"""A wheel of the holepunch code that is running, for a test pass's offline re-run.

The wheelhouse in the cache (made by .ci/setup) holds a holepunch wheel of whatever checkout was
set up, not of the code that ran the pass; a re-run must run the same code. So the test-pass zip
carries a wheel built here, in memory, from the installed packages' own files: deterministic
(fixed times, sorted entries), pure Python (no build backend, no network).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import io
import zipfile
from pathlib import Path

DISTRIBUTION = "holepunch"
PACKAGES = ("cluster", "controller", "worker")
_EPOCH = (1980, 1, 1, 0, 0, 0)
WHEEL_TEXT = ("Wheel-Version: 1.0\nGenerator: holepunch.selfwheel\nRoot-Is-Purelib: true\n"
              "Tag: py3-none-any\n")


def package_files(packages: tuple[str, ...] = PACKAGES) -> dict[str, bytes]:
    """`<package>/<file>.py` -> content, found without importing the packages."""
    files: dict[str, bytes] = {}
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"package {package!r} is not installed")
        folder = Path(list(spec.submodule_search_locations)[0])
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[f"{package}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    return files


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(name: str, version: str, metadata: str, entry_points: str,
                files: dict[str, bytes]) -> tuple[str, bytes]:
    """(file name, bytes) of a pure-Python wheel holding `files` (pure: no disk access)."""
    normal = name.replace("-", "_")
    info = f"{normal}-{version}.dist-info"
    top_level = "\n".join(sorted({path.split("/", 1)[0] for path in files})) + "\n"
    entries = {**files,
               f"{info}/METADATA": metadata.encode("utf-8"),
               f"{info}/WHEEL": WHEEL_TEXT.encode("utf-8"),
               f"{info}/entry_points.txt": entry_points.encode("utf-8"),
               f"{info}/top_level.txt": top_level.encode("utf-8")}
    record = [_record_line(path, data) for path, data in sorted(entries.items())]
    record.append(f"{info}/RECORD,,")
    entries[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode("utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(entries, key=lambda p: (p.startswith(info), p)):  # dist-info last
            entry = zipfile.ZipInfo(path, date_time=_EPOCH)
            entry.external_attr = 0o100644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, entries[path])
    return f"{normal}-{version}-py3-none-any.whl", buffer.getvalue()


def running_wheel() -> tuple[str, bytes]:
    """The wheel of the holepunch code this process runs (its metadata from the installed dist)."""
    dist = importlib.metadata.distribution(DISTRIBUTION)
    metadata = dist.read_text("METADATA") or f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\n"
    return build_wheel(DISTRIBUTION, dist.version, metadata, dist.read_text("entry_points.txt") or "",
                       package_files())
