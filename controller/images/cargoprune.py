"""Vendored crates no build on this platform uses, stubbed out of a source snapshot.

`cargo vendor` copies every crate Cargo.lock names, for every platform: the windows-* family
alone is about 200 MB of the relay's 470 MB vendor/ (21 MB of its 68 MB snapshot zip). Cargo
still reads their manifests to resolve the lock file, but never compiles them for Linux. So a
snapshot keeps each unused crate as a stub: its Cargo.toml, an empty library (and build script,
if it names one) and a .cargo-checksum.json that keeps the package checksum Cargo.lock pins but
lists no files to verify. What a build compiles is untouched, and so is the snapshot's name
(controller.images.sources hashes the source without vendor/).

Which crates are used: `cargo metadata --filter-platform <host>` (offline, from vendor/ itself).
Without cargo, or if it fails, nothing is stubbed.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

CHECKSUM = ".cargo-checksum.json"


def host_triple() -> str | None:
    result = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        if line.startswith("host: "):
            return line.removeprefix("host: ").strip()
    return None


def used_packages(folder: Path, triple: str) -> set[tuple[str, str]] | None:
    """(name, version) of every package a build of `folder` for `triple` resolves; None if
    cargo cannot say (then nothing may be stubbed)."""
    folder = folder.resolve()
    try:
        result = subprocess.run(
            ["cargo", "metadata", "--offline", "--locked", "--format-version", "1",
             "--filter-platform", triple, "--manifest-path", str(folder / "Cargo.toml")],
            capture_output=True, text=True, check=False, cwd=folder)
    except OSError:
        return None
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout)
    resolved = {node["id"] for node in (data.get("resolve") or {}).get("nodes", [])}
    return {(p["name"], p["version"]) for p in data["packages"] if p["id"] in resolved}


def crate_identity(crate: Path) -> tuple[str, str] | None:
    try:
        package = tomllib.loads((crate / "Cargo.toml").read_text(encoding="utf-8"))["package"]
        return package["name"], str(package["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def stub(crate: Path) -> dict[str, bytes]:
    """The files a stub of `crate` keeps, by their path inside the crate."""
    manifest = (crate / "Cargo.toml").read_bytes()
    parsed = tomllib.loads(manifest.decode("utf-8"))
    package_sum = json.loads((crate / CHECKSUM).read_text(encoding="utf-8")).get("package")
    files = {"Cargo.toml": manifest,
             CHECKSUM: json.dumps({"files": {}, "package": package_sum}).encode(),
             (parsed.get("lib") or {}).get("path", "src/lib.rs"): b""}
    build = parsed["package"].get("build")
    if isinstance(build, str):
        files[build] = b"fn main() {}\n"
    return files


def unused_crates(folder: Path) -> dict[str, dict[str, bytes]]:
    """vendor/<crate> -> its stub, for each vendored crate no build for this host uses."""
    vendor = folder / "vendor"
    if not (folder / "Cargo.lock").is_file() or not vendor.is_dir():
        return {}
    triple = host_triple()
    used = used_packages(folder, triple) if triple else None
    if not used:
        return {}
    stubs: dict[str, dict[str, bytes]] = {}
    for crate in sorted(p for p in vendor.iterdir() if p.is_dir() and (p / CHECKSUM).is_file()):
        identity = crate_identity(crate)
        if identity is not None and identity not in used:
            stubs[f"vendor/{crate.name}"] = stub(crate)
    return stubs
