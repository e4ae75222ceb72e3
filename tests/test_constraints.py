"""constraints.txt pins every package holepunch runs on, and the venv `.ci/setup` made has them."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not NAME==VERSION"
            found[_canonical(name)] = version
    return found


def dependencies(root: str = "holepunch", extras: tuple[str, ...] = ("test",)) -> set[str]:
    """Every distribution `root` needs, with its extras, recursively (markers evaluated here)."""
    seen: set[str] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker and not any(marker.evaluate({"extra": e}) for e in (*wanted, "")):
                continue
            dep = _canonical(requirement.name)
            if dep not in seen:
                seen.add(dep)
                todo.append((requirement.name, tuple(requirement.extras)))
    return seen


def test_every_dependency_is_pinned_and_installed_at_its_pin():
    pinned = pins()
    needed = dependencies()
    assert {"celery", "kombu", "billiard", "redis"} <= needed
    unpinned = sorted(needed - set(pinned))
    assert not unpinned, f"constraints.txt pins none of {unpinned}"
    wrong = {name: (metadata.version(name), pinned[name]) for name in needed
             if metadata.version(name) != pinned[name]}
    assert not wrong, f"installed (version, pinned): {wrong}; run bash .ci/setup"


def test_setup_installs_with_the_constraints():
    setup = (CONSTRAINTS.parent / ".ci" / "setup").read_text(encoding="utf-8")
    assert re.search(r"pip install [^\n]*-c constraints\.txt[^\n]*-e '\.\[test\]'", setup)
