"""A github source's build folder: what builds GitHub's unmodified tree, kept for re-runs.

A github source's snapshot is GitHub's zip of the commit, which holds no Makefile of ours: the
image is made by the version folder beside impls.yaml (impl/rust/upstream-head: Makefile,
Dockerfile) and what its Makefile includes from the language folder (../upstream.mk). Every
build of a github source, rebuilt or found up to date, copies those into
`<cache>/github/<id>/`, laid out as in the language folder (`upstream-head/Makefile`,
`upstream.mk`): a test-pass zip bundles that folder, and its re-run runs the same Makefile in
it against the same zip, offline, with the vendored crates the zip carries beside it
(`snapshots/<commit>.vendor.tar.zst`, impl/rust/upstream.mk). The tree itself is never changed.

The copy is of the version folder as it is when the image is built or found up to date: like
the image itself, a github source is keyed by its commit, not by its Makefile's content.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from cluster.errors import ConfigError, InfrastructureError
from controller.images.sources import source_files

FOLDER = "github"
# `include a b`, `-include a`, `sinclude a`: make's include directives, comment stripped
_INCLUDE = re.compile(r"^\s*(?:-include|sinclude|include)\s+(?P<names>[^#]*)")


def makefile_includes(text: str) -> list[str]:
    """The files a Makefile includes by a literal name (`include ../upstream.mk`), in order;
    a name made of variables (`include $(X).mk`) cannot be known without make and is left out."""
    names: list[str] = []
    for line in text.splitlines():
        found = _INCLUDE.match(line)
        if found is None:
            continue
        names += [name for name in found["names"].split() if "$" not in name]
    return list(dict.fromkeys(names))


def build_folder_files(folder: Path) -> dict[str, Path]:
    """Name (relative to the language folder) -> file: the version folder's own files, what
    builds leave there left out (controller.images.sources), and each file its Makefile
    includes from the language folder. An include that leads out of the language folder, or to
    no file, is a configuration error: a re-run could not build with it."""
    makefile = folder / "Makefile"
    if not makefile.is_file():
        raise ConfigError(folder, "Makefile", "a github source's folder must hold its Makefile")
    language = folder.resolve().parent
    files = {f"{folder.name}/{path.relative_to(folder).as_posix()}": path
             for path in source_files(folder) if path.is_file()}
    for name in makefile_includes(makefile.read_text(encoding="utf-8")):
        target = (folder / name).resolve()
        if language not in target.parents:
            raise ConfigError(makefile, "include",
                              f"{name!r} leads out of {language.name}/: a test pass cannot carry it")
        if not target.is_file():
            raise ConfigError(makefile, "include", f"{name!r} is not a file")
        files.setdefault(target.relative_to(language).as_posix(), target)
    return files


def kept_folder(cache_root: Path, name: str) -> Path:
    """Where the cache keeps image `name`'s build folder (and a re-run finds it)."""
    return cache_root / FOLDER / name


def keep(cache_root: Path, name: str, folder: Path) -> Path:
    """Copy `folder`'s build folder to `<cache>/github/<name>/`, replacing the last copy whole
    (a renamed folder: readers see the old copy or the new one, never a mix)."""
    files = build_folder_files(folder)
    target = kept_folder(cache_root, name)
    staging = target.with_name(f".{name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for relative, source in files.items():
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, staging / relative)
    old = target.with_name(f".{name}.{os.getpid()}.old")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def kept_files(cache_root: Path, name: str) -> dict[str, Path]:
    """The kept build folder's files by their name under `github/<name>/` ({} if none kept)."""
    folder = kept_folder(cache_root, name)
    if not folder.is_dir():
        return {}
    return {path.relative_to(folder).as_posix(): path
            for path in sorted(folder.rglob("*")) if path.is_file() and not path.is_symlink()}


def version_folder(kept: Path) -> Path:
    """The version folder in a kept build folder: the one folder holding a Makefile."""
    found = sorted(path.parent for path in kept.glob("*/Makefile") if path.is_file())
    if len(found) != 1:
        raise InfrastructureError(f"{kept}: expected one version folder with a Makefile, "
                                  f"found {len(found)}")
    return found[0]
