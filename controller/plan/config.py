"""Read a repository's configuration for one kind of pass: impls.yaml and the selection files."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ConfigError, UsageError
from cluster.models import ImplsFile, SelectionFile
from cluster.selection import check_aliases
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
    """impls.yaml, with every folder it names inside `root` and its aliases well formed."""
    path = root / IMPLS_FILE
    impls = load_model(ImplsFile, path)
    for index, impl in enumerate(impls.implementations):
        key = f"implementations[{index}].source"
        folder = _inside(root, root / impl.folder, path, f"{key}.path", "the repository")
        if impl.source.type == "local":
            if not _is_dir(folder):
                raise ConfigError(path, f"{key}.path",
                                  f"folder {impl.folder!r} of {impl.id!r} does not exist")
            _inside(folder, folder / impl.source.dockerfile, path, f"{key}.dockerfile",
                    f"its source folder {impl.folder}")
    check_aliases(impls.aliases(), str(path))
    return impls


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, a folder we may not read: not a usable source folder
        return False


def _inside(top: Path, candidate: Path, source: Path, key: str, what: str) -> Path:
    """`candidate` with symlinks resolved, refused unless it stays under `top` (also resolved):
    a link in the checkout must not let a build read or hash files elsewhere on the machine."""
    try:
        resolved, top_resolved = candidate.resolve(), top.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable folder
        raise ConfigError(source, key, f"cannot resolve {candidate}: {exc}") from None
    if not resolved.is_relative_to(top_resolved):
        raise ConfigError(source, key, f"{candidate} resolves to {resolved}, outside {what} "
                                       f"({top_resolved}); expected a path inside it")
    return resolved


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
    if kind not in languages(root):  # a name, never a path: `--kind ../..` reads nothing
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
