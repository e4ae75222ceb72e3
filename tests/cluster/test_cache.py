"""The content-addressed cache: where it lives, names by full sha256, no half files."""

from pathlib import Path

import pytest

from cluster import cache as cache_module
from cluster.cache import Cache, atomic_write, default_cache_root, sha256_bytes
from cluster.matrix import matrix_cache_key


def test_root_precedence(tmp_path: Path) -> None:
    assert default_cache_root(tmp_path / "cli", {"HOLEPUNCH_CACHE": "/env"}) == tmp_path / "cli"
    assert default_cache_root(None, {"HOLEPUNCH_CACHE": "/env"}) == Path("/env")
    assert default_cache_root(None, {}) == Path.home() / ".cache" / "holepunch"


def test_store_names_by_full_sha256_and_is_idempotent(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    digest, path = cache.store("docker-compose", "services: {}\n", ".yaml")
    assert digest == sha256_bytes(b"services: {}\n") and len(digest) == 64
    assert path == tmp_path / "docker-compose" / f"{digest}.yaml"
    mtime = path.stat().st_mtime_ns
    assert cache.store("docker-compose", "services: {}\n", ".yaml") == (digest, path)
    assert path.stat().st_mtime_ns == mtime


def test_unknown_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Cache(tmp_path).folder("elsewhere")


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.yaml"
    atomic_write(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(cache_module.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.yaml"]


def test_matrix_key_changes_with_any_input_and_framing() -> None:
    base = [("impls", b"a"), ("kind", b"full")]
    assert matrix_cache_key(base) == matrix_cache_key(list(base))
    assert matrix_cache_key(base) != matrix_cache_key([("impls", b"b"), ("kind", b"full")])
    assert matrix_cache_key([("a", b"bc")]) != matrix_cache_key([("ab", b"c")])
