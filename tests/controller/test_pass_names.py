"""Pass names stay unique when passes start in the same second (cluster issue, point 4)."""

from __future__ import annotations

from cluster.cache import Cache
from controller.results.registered import claim_pass_name


class FakeRedis:
    """A fake: just SET with NX, as the broker's Redis does it."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def set(self, key: str, value: str, nx: bool = False, ex: int | None = None) -> bool:
        if nx and key in self.keys:
            return False
        self.keys[key] = value
        return True


def test_same_second_gets_a_suffix(tmp_path) -> None:
    redis, cache = FakeRedis(), Cache(tmp_path)
    names = [claim_pass_name(redis, cache, "hole-punch-full-120000-25-11-2026") for _ in range(3)]
    assert names == ["hole-punch-full-120000-25-11-2026", "hole-punch-full-120000-25-11-2026-2",
                     "hole-punch-full-120000-25-11-2026-3"]


def test_a_zip_already_in_the_cache_is_never_overwritten(tmp_path) -> None:
    cache = Cache(tmp_path)
    (cache.folder("test-passes") / "hole-punch-go-010203-01-02-2026.zip").write_bytes(b"zip")
    assert claim_pass_name(FakeRedis(), cache, "hole-punch-go-010203-01-02-2026") \
        == "hole-punch-go-010203-01-02-2026-2"
