"""Test selection: the seed's rules, its examples verbatim, and the unified-testing extensions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.errors import ConfigError
from cluster.models import ImplsFile, SelectionFile
from cluster.selection import (
    MAX_ALIAS_DEPTH,
    Selection,
    check_aliases,
    compile_patterns,
    resolve_selection,
    select_tests,
    split_patterns,
)


def impls(*entries, aliases=None) -> ImplsFile:
    data = {"implementations": [
        {"id": e[0], "source": {"type": "local", "path": f"impl/{e[0]}"}, "transports": e[1],
         **(e[2] if len(e) > 2 else {})} for e in entries]}
    if aliases:
        data["test-aliases"] = aliases
    return ImplsFile.model_validate(data)


SEED = impls(("rust-v0.53", ["tcp", "quic"]), ("rust-v0.54", ["tcp", "quic"]),
             ("go-v0.43", ["tcp", "quic"]))

# impl/rust/test-selection.yaml, verbatim from the seed
SEED_RUST_SELECTION = SelectionFile.model_validate({
    "test-filter": ["rust-v0.53", "rust-v0.54"],
    "test-ignore": ["rust-v0.53 x rust-v0.54", "rust-v0.53 x rust-v0.53 (tcp)"],
})


def names(selection: Selection, config: ImplsFile = SEED) -> list[str]:
    return [t.name for t in select_tests(config, selection).tests]


def test_names_follow_the_seed() -> None:
    all_names = names(Selection())
    assert all_names[:2] == ["rust-v0.53 x rust-v0.53 (tcp)", "rust-v0.53 x rust-v0.53 (quic)"]
    assert len(all_names) == 3 * 3 * 2


def test_seed_rust_selection() -> None:
    chosen = names(resolve_selection(SEED_RUST_SELECTION, None, None))
    assert "rust-v0.53 x rust-v0.54 (tcp)" not in chosen  # ignored, as the seed's comment says
    assert "rust-v0.53 x rust-v0.54 (quic)" not in chosen
    assert "rust-v0.53 x rust-v0.53 (tcp)" not in chosen
    assert "rust-v0.53 x rust-v0.53 (quic)" in chosen
    assert "rust-v0.54 x rust-v0.53 (tcp)" in chosen
    assert "go-v0.43 x rust-v0.54 (quic)" in chosen  # the filter is a substring match
    assert "go-v0.43 x go-v0.43 (tcp)" not in chosen


def test_seed_cli_filter_keeps_default_ignore() -> None:
    chosen = names(resolve_selection(SEED_RUST_SELECTION, "rust-v0.53|go-v0.43", None))
    assert "rust-v0.53 x rust-v0.54 (tcp)" not in chosen
    assert "go-v0.43 x go-v0.43 (tcp)" in chosen


def test_explicit_empty_strings_bypass_defaults() -> None:
    everything = names(resolve_selection(SEED_RUST_SELECTION, "", ""))
    assert len(everything) == 18
    only_ignore_overridden = names(resolve_selection(SEED_RUST_SELECTION, None, ""))
    assert "rust-v0.53 x rust-v0.54 (tcp)" in only_ignore_overridden
    assert "go-v0.43 x go-v0.43 (tcp)" not in only_ignore_overridden


def test_split_patterns() -> None:
    assert split_patterns("rust-v0.53|go-v0.43") == ("rust-v0.53", "go-v0.43")
    assert split_patterns(" a | |b ") == ("a", "b")
    assert split_patterns("") == ()


def test_only_common_transports() -> None:
    config = impls(("a", ["tcp"]), ("b", ["quic"]), ("c", ["tcp", "quic"]))
    chosen = names(Selection(), config)
    assert "a x b (tcp)" not in chosen and "a x b (quic)" not in chosen
    assert "a x c (tcp)" in chosen and "b x c (quic)" in chosen and "c x b (quic)" in chosen


def test_tcp_multiplies_over_common_secure_channels_and_muxers() -> None:
    config = impls(("a", ["tcp", "quic"], {"secureChannels": ["noise", "tls"], "muxers": ["yamux"]}),
                   ("b", ["tcp", "quic"], {"secureChannels": ["noise"], "muxers": ["yamux", "mplex"]}),
                   ("c", ["tcp"]))
    chosen = names(Selection(), config)
    assert "a x a (tcp, noise, yamux)" in chosen and "a x a (tcp, tls, yamux)" in chosen
    assert "a x b (tcp, noise, yamux)" in chosen
    assert "a x b (tcp, tls, yamux)" not in chosen and "a x b (tcp, noise, mplex)" not in chosen
    assert "a x b (quic)" in chosen  # quic stays standalone
    assert "a x c (tcp)" in chosen  # one side lists nothing: the seed's name


def test_aliases_and_negation() -> None:
    config = impls(("rust-v1", ["tcp"]), ("go-v1", ["tcp"]), ("js-v1", ["tcp"]),
                   aliases={"compiled": "rust-v|go-v", "web": ["js-v"], "all": ["~compiled", "~web"]})
    assert names(Selection(filter=("~web",)), config) == [
        "rust-v1 x js-v1 (tcp)", "go-v1 x js-v1 (tcp)", "js-v1 x rust-v1 (tcp)",
        "js-v1 x go-v1 (tcp)", "js-v1 x js-v1 (tcp)"]
    assert names(Selection(filter=("!~web",)), config) == [
        "rust-v1 x rust-v1 (tcp)", "rust-v1 x go-v1 (tcp)", "go-v1 x rust-v1 (tcp)",
        "go-v1 x go-v1 (tcp)"]
    assert len(names(Selection(filter=("~all",)), config)) == 9
    assert names(Selection(ignore=("!rust-v1 x",)), config) == [
        "rust-v1 x rust-v1 (tcp)", "rust-v1 x go-v1 (tcp)", "rust-v1 x js-v1 (tcp)"]


def test_unknown_alias_and_cycles_are_config_errors() -> None:
    config = impls(("a", ["tcp"]), aliases={"x": "~y", "y": "~x"})
    with pytest.raises(ConfigError, match="unknown test alias"):
        names(Selection(filter=("~nope",)), config)
    with pytest.raises(ConfigError, match="refers to itself"):
        names(Selection(filter=("~x",)), config)


def test_known_failures_mark_tests_and_ignored_are_counted() -> None:
    selected = select_tests(SEED, Selection(ignore=("x go",), known_failures=("go-v0.43 x rust",)))
    marked = {t.name for t in selected.tests if t.expected_failure}
    assert marked == {"go-v0.43 x rust-v0.53 (tcp)", "go-v0.43 x rust-v0.53 (quic)",
                      "go-v0.43 x rust-v0.54 (tcp)", "go-v0.43 x rust-v0.54 (quic)"}
    assert selected.ignored == 6


ALL_NAMES = [t.name for t in select_tests(SEED, Selection()).tests]
fragments = st.sampled_from(["rust", "go", "v0.53", " x ", "(tcp)", "quic", "zzz", "!rust", "!x"])


def hit(pattern: str, name: str) -> bool:
    return (pattern[1:] not in name) if pattern.startswith("!") else (pattern in name)


@given(st.lists(fragments, max_size=4), st.lists(fragments, max_size=4))
def test_ignore_always_wins(filter_, ignore) -> None:
    chosen = names(Selection(filter=tuple(filter_), ignore=tuple(ignore)))
    assert not any(hit(p, name) for name in chosen for p in ignore)
    assert set(chosen) <= set(ALL_NAMES)


@given(st.lists(fragments, max_size=4))
def test_empty_filter_selects_all_but_ignored(ignore) -> None:
    chosen = names(Selection(ignore=tuple(ignore)))
    assert chosen == [n for n in ALL_NAMES if not any(hit(p, n) for p in ignore)]


class CountingAliases(dict):
    """A fake test-aliases table that counts how often an alias is expanded, and stops the
    test once that passes `limit` (unmemoised expansion of a deep chain would run for minutes)."""

    def __init__(self, data: dict, limit: int):
        super().__init__(data)
        self.expansions, self.limit = 0, limit

    def __getitem__(self, key):
        self.expansions += 1
        assert self.expansions <= self.limit, f"alias expanded more than {self.limit} times"
        return super().__getitem__(key)


def test_a_deep_alias_chain_expands_each_alias_once() -> None:
    depth = 30
    # level i names level i+1 three times (3**30 paths through the chain) beside its own pattern
    table = {f"l{i}": [f"~l{i + 1}", f"no-such-{i}", f"~l{i + 1}", f"!!~l{i + 1}"]
             for i in range(depth)}
    table[f"l{depth}"] = ["rust-v0.53 x"]
    aliases = CountingAliases(table, limit=2 * (depth + 1))
    predicates = compile_patterns(["~l0", "!~l0", "~l0"], aliases)
    assert aliases.expansions == depth + 1  # one per alias, however often the chain names it

    class CountingName(str):
        """A test name that counts the substring checks made on it."""
        checks = 0

        def __contains__(self, part):
            CountingName.checks += 1
            assert CountingName.checks <= 10 * (depth + 1), "an alias was evaluated twice"
            return super().__contains__(part)
    assert predicates[0](CountingName("go-v0.43 x go-v0.43 (tcp)")) is False
    assert CountingName.checks == depth + 1  # each level's own pattern, and the leaf's
    config = impls(("rust-v0.53", ["tcp"]), ("go-v0.43", ["tcp"]), aliases=table)
    chosen = names(Selection(filter=("~l0",)), config)
    assert chosen == ["rust-v0.53 x rust-v0.53 (tcp)", "rust-v0.53 x go-v0.43 (tcp)"]


def test_an_alias_cycle_names_its_chain() -> None:
    config = impls(("a", ["tcp"]), aliases={"a": ["x", "~b"], "b": "~c|y", "c": ["~a"]})
    with pytest.raises(ConfigError) as caught:
        names(Selection(filter=("~a",)), config)
    assert caught.value.key == "test-aliases.c"
    assert caught.value.problem == "alias refers to itself: ~a -> ~b -> ~c -> ~a"
    with pytest.raises(ConfigError, match="refers to itself: ~a -> ~b -> ~c -> ~a"):
        check_aliases(config.aliases())


def test_aliases_nest_no_deeper_than_the_limit() -> None:
    table = {f"l{i}": [f"~l{i + 1}"] for i in range(MAX_ALIAS_DEPTH + 5)}
    table[f"l{MAX_ALIAS_DEPTH + 5}"] = ["x"]
    with pytest.raises(ConfigError, match=f"nest deeper than {MAX_ALIAS_DEPTH}"):
        compile_patterns(["~l0"], table)


def test_an_unknown_alias_names_the_list_and_index() -> None:
    with pytest.raises(ConfigError) as caught:
        select_tests(SEED, Selection(ignore=("go", "~nope")), source="s.yaml")
    assert (caught.value.source, caught.value.key) == ("s.yaml", "test-ignore[1]")
    assert "unknown test alias ~nope" in caught.value.problem
