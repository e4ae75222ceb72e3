"""Read a repository's configuration for one kind of pass: impls.yaml and the selection files."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ConfigError, UsageError
from cluster.models import ImplsFile, SelectionFile
from cluster.yamlio import load_model

IMPLS_FILE = "impls.yaml"
SELECTION_FILE = "test-selection.yaml"


@dataclass(frozen=True)
class RepoConfig:
    root: Path
    impls: ImplsFile
    defaults: SelectionFile          # the selection file for this kind
    defaults_path: Path
    global_defaults: SelectionFile   # the root file: its known-failures hold for every kind


@dataclass(frozen=True)
class KindChoice:
    kind: str
    reason: str


def load_impls(root: Path) -> ImplsFile:
    path = root / IMPLS_FILE
    impls = load_model(ImplsFile, path)
    for index, impl in enumerate(impls.implementations):
        if impl.source.type == "local" and not (root / impl.folder).is_dir():
            key = f"implementations[{index}].source.path"
            raise ConfigError(path, key, f"folder {impl.folder!r} of {impl.id!r} does not exist")
    return impls


def languages(root: Path) -> list[str]:
    impl_dir = root / "impl"
    if not impl_dir.is_dir():
        return []
    return sorted(p.name for p in impl_dir.iterdir() if (p / SELECTION_FILE).is_file())


def selection_path(root: Path, kind: str) -> Path:
    """`full` uses the root test-selection.yaml; a language uses impl/<lang>/test-selection.yaml."""
    if kind == "full":
        return root / SELECTION_FILE
    folder = root / "impl" / kind
    if not folder.is_dir() or not (folder / SELECTION_FILE).is_file():
        choices = ", ".join(["full", "auto", *languages(root)])
        raise UsageError("--kind", f"no impl/{kind}/{SELECTION_FILE} under {root}; "
                                   f"expected one of: {choices}")
    return folder / SELECTION_FILE


def load_config(root: Path, kind: str) -> RepoConfig:
    if not root.is_dir():
        raise UsageError("--root", f"{root} is not a directory")
    impls = load_impls(root)
    path = selection_path(root, kind)
    defaults = load_model(SelectionFile, path)
    global_path = root / SELECTION_FILE
    global_defaults = defaults if path == global_path else load_model(SelectionFile, global_path)
    return RepoConfig(root, impls, defaults, path, global_defaults)


def kind_from_changes(changed: list[str], known_langs: list[str]) -> KindChoice:
    """Changes only under one impl/<lang>/ pick that language; anything else is a full pass."""
    if not changed:
        return KindChoice("full", "no changes found")
    langs = set()
    for name in changed:
        parts = name.split("/")
        if len(parts) < 3 or parts[0] != "impl" or parts[1] not in known_langs:
            return KindChoice("full", f"change outside impl/<lang>/: {name}")
        langs.add(parts[1])
    if len(langs) > 1:
        return KindChoice("full", f"changes in several languages: {', '.join(sorted(langs))}")
    (lang,) = langs
    return KindChoice(lang, f"change in impl/{lang}/**")


def changed_files(root: Path, base: str) -> list[str]:
    """Files that differ between `base` and the work tree, relative to `root`."""
    result = subprocess.run(["git", "-C", str(root), "diff", "--name-only", "--relative", base],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UsageError("--kind auto", f"git diff against {base!r} failed in {root}: "
                                        f"{result.stderr.strip() or 'not a git repository?'}")
    return [line for line in result.stdout.splitlines() if line.strip()]


def detect_kind(root: Path, base: str = "HEAD~1") -> KindChoice:
    return kind_from_changes(changed_files(root, base), languages(root))
