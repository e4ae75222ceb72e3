"""NAT presets and the relay as selection dimensions: names, matching, YAML, CLI text, theory."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import ConfigError, UsageError
from cluster.matrix import build_matrix, matrix_from_yaml, matrix_to_yaml
from cluster.models import ImplsFile, Relay, SelectionFile, Theory
from cluster.nat import PRESETS
from cluster.selection import Selection, parse_nat, parse_relays, resolve_selection, select_tests
from cluster.selection import test_name as name_of
from cluster.yamlio import load_model


def impls(*entries, aliases=None) -> ImplsFile:
    data = {"implementations": [{"id": e[0], "source": {"type": "local", "path": f"impl/{e[0]}"},
                                 "transports": e[1]} for e in entries]}
    if aliases:
        data["test-aliases"] = aliases
    return ImplsFile.model_validate(data)


SEED = impls(("rust-v0.53", ["tcp", "quic"]), ("rust-v0.54", ["tcp", "quic"]),
             ("go-v0.43", ["tcp", "quic"]))

REPO = Path(__file__).resolve().parents[2]


def pairs(dialers, listeners, **more) -> Selection:
    return Selection(dialer_nats=tuple(dialers), listener_nats=tuple(listeners), **more)


def test_the_default_pair_keeps_the_seeds_names() -> None:
    default = [t.name for t in select_tests(SEED, Selection()).tests]
    assert default[:2] == ["rust-v0.53 x rust-v0.53 (tcp)", "rust-v0.53 x rust-v0.53 (quic)"]
    assert not any("[" in name for name in default)
    tests = select_tests(SEED, Selection()).tests
    assert {(t.dialer_nat, t.listener_nat, t.relay) for t in tests} == {
        ("port-restricted-cone", "port-restricted-cone", Relay.RUST)}
    assert {t.theory for t in tests} == {Theory.POSSIBLE}


def test_a_non_default_pair_is_in_the_name() -> None:
    assert (name_of("rust-v0.57", "go-v0.51", "quic", "symmetric", "full-cone")
            == "rust-v0.57 x go-v0.51 (quic) [symmetric x full-cone]")
    assert name_of("a", "b", "tcp", "port-restricted-cone", "port-restricted-cone") == "a x b (tcp)"
    # one side default is still a non-default pair
    assert name_of("a", "b", "tcp", "port-restricted-cone", "cgnat") == (
        "a x b (tcp) [port-restricted-cone x cgnat]")


def test_every_pair_of_the_lists_runs_each_test_once() -> None:
    tests = select_tests(SEED, pairs(["full-cone", "symmetric"], ["port-restricted-cone",
                                                                   "symmetric"])).tests
    assert len(tests) == 18 * 4
    assert len({t.name for t in tests}) == len(tests)
    one = [t for t in tests if t.name.startswith("go-v0.43 x rust-v0.53 (quic)")]
    assert sorted(t.name for t in one) == sorted([
        "go-v0.43 x rust-v0.53 (quic) [full-cone x port-restricted-cone]",
        "go-v0.43 x rust-v0.53 (quic) [full-cone x symmetric]",
        "go-v0.43 x rust-v0.53 (quic) [symmetric x port-restricted-cone]",
        "go-v0.43 x rust-v0.53 (quic) [symmetric x symmetric]"])


def test_filters_ignores_aliases_and_known_failures_match_the_pair() -> None:
    config = impls(("rust-v0.53", ["tcp"]), ("go-v0.43", ["tcp"]),
                   aliases={"sym": "x symmetric]"})
    both = ["full-cone", "symmetric"]
    sel = pairs(both, both, filter=("[symmetric x",), ignore=("~sym",))
    names = [t.name for t in select_tests(config, sel).tests]
    assert names and all("[symmetric x full-cone]" in n for n in names)
    known = pairs(both, both, known_failures=("[full-cone x full-cone]",))
    marked = {t.name for t in select_tests(config, known).tests if t.expected_failure}
    assert marked == {t.name for t in select_tests(config, known).tests
                      if "[full-cone x full-cone]" in t.name or "[symmetric x symmetric]" in t.name}


def test_each_test_carries_theorys_verdict_and_impossible_cells_are_expected_to_fail() -> None:
    tests = select_tests(SEED, pairs(PRESETS, PRESETS)).tests
    by_pair = {(t.dialer_nat, t.listener_nat): t for t in tests if t.name.startswith(
        "rust-v0.53 x go-v0.43 (tcp)")}
    assert by_pair[("symmetric", "symmetric")].theory is Theory.IMPOSSIBLE
    assert by_pair[("symmetric", "port-restricted-cone")].theory is Theory.IMPOSSIBLE
    assert by_pair[("symmetric", "full-cone")].theory is Theory.ONE_WAY
    assert by_pair[("cgnat", "restricted-cone")].theory is Theory.POSSIBLE
    for test in tests:
        assert test.expected_failure is (test.theory is Theory.IMPOSSIBLE)


def test_nat_flag_text() -> None:
    assert parse_nat("full-cone,symmetric").dialer == ("full-cone", "symmetric")
    both = parse_nat("all x symmetric")
    assert both.dialer == tuple(PRESETS) and both.listener == ("symmetric",)
    for bad in ("", "cone", "full-cone x", "a x b x c"):
        with pytest.raises(UsageError, match="--nat"):
            parse_nat(bad)
    assert parse_relays("rust") == (Relay.RUST,)
    assert parse_relays("go, rust,go") == (Relay.GO, Relay.RUST)
    for bad in ("", "js", "rust,js"):
        with pytest.raises(UsageError, match="--relay.*rust, go"):
            parse_relays(bad)


def test_each_relay_runs_every_test_once_and_a_non_default_one_is_named() -> None:
    tests = select_tests(SEED, Selection(relays=(Relay.RUST, Relay.GO))).tests
    assert len(tests) == 2 * len(select_tests(SEED, Selection()).tests)
    through_go = [t for t in tests if t.relay is Relay.GO]
    assert through_go and all(t.name.endswith(" [relay go]") for t in through_go)
    assert not any("[relay" in t.name for t in tests if t.relay is Relay.RUST)
    assert "go-v0.43 x rust-v0.53 (quic) [relay go]" in {t.name for t in through_go}
    assert (name_of("a", "b", "tcp", "symmetric", "full-cone", Relay.GO)
            == "a x b (tcp) [symmetric x full-cone] [relay go]")
    only_go = select_tests(SEED, Selection(relays=(Relay.GO,), filter=("[relay go]",))).tests
    assert [t.name for t in only_go] == [t.name for t in through_go]


def test_relays_come_from_the_yaml_unless_the_flag_is_given() -> None:
    defaults = SelectionFile.model_validate({"relays": ["go"]})
    assert resolve_selection(defaults, None, None).relays == (Relay.GO,)
    assert resolve_selection(defaults, None, None, cli_relay="rust,go").relays == (
        Relay.RUST, Relay.GO)
    assert resolve_selection(SelectionFile(), None, None).relays == (Relay.RUST,)
    assert Relay.RUST.image_key == "rust-relay" and Relay.GO.image_key == "go-relay"


def test_yaml_lists_and_flag_override() -> None:
    defaults = SelectionFile.model_validate({"nat": ["full-cone", "cgnat"],
                                             "listener-nat": ["symmetric"]})
    sel = resolve_selection(defaults, None, None)
    assert sel.dialer_nats == ("full-cone", "cgnat") and sel.listener_nats == ("symmetric",)
    flag = resolve_selection(defaults, None, None, cli_nat="restricted-cone")
    assert flag.dialer_nats == flag.listener_nats == ("restricted-cone",)
    default = resolve_selection(SelectionFile(), None, None)
    assert default.dialer_nats == default.listener_nats == ("port-restricted-cone",)


def test_an_unknown_preset_in_yaml_names_file_key_and_choices(tmp_path) -> None:
    path = tmp_path / "test-selection.yaml"
    path.write_text("nat: [full-cone, symetric]\n")
    with pytest.raises(ConfigError) as caught:
        load_model(SelectionFile, path)
    text = str(caught.value)
    assert str(path) in text and "nat" in text and "symetric" in text and "full-cone" in text


def test_matrix_records_the_pairs_and_keeps_the_seeds_shape_by_default() -> None:
    default = select_tests(SEED, Selection()).tests
    text = matrix_to_yaml(build_matrix(default, Selection(), "full", "2026-12-03T00:00:00Z"))
    assert "Nat" not in text and "relay" not in text and "theory" not in text
    sel = pairs(["symmetric"], ["full-cone", "port-restricted-cone"])
    tests = select_tests(SEED, sel).tests
    text = matrix_to_yaml(build_matrix(tests, sel, "full", "2026-12-03T00:00:00Z"))
    back = matrix_from_yaml(text)
    assert back.metadata.dialer_nats == ["symmetric"]
    assert back.metadata.listener_nats == ["full-cone", "port-restricted-cone"]
    assert [(t.dialer_nat, t.listener_nat, t.theory) for t in back.tests] == [
        (t.dialer_nat, t.listener_nat, t.theory) for t in tests]
    assert "dialerNat: symmetric" in text and "theory: impossible" in text


def test_the_repository_default_pass_is_unchanged() -> None:
    import tempfile

    from cluster.cache import Cache
    from controller.plan.matrix import plan_matrix
    plan = plan_matrix(REPO, "full", None, None, Cache(Path(tempfile.mkdtemp())))
    assert len(plan.matrix.tests) == 85
    assert not any("[" in t.name for t in plan.matrix.tests)


def test_an_unknown_relay_in_yaml_names_file_key_and_choices(tmp_path) -> None:
    path = tmp_path / "test-selection.yaml"
    path.write_text("relays: [rust, js]\n")
    with pytest.raises(ConfigError) as caught:
        load_model(SelectionFile, path)
    text = str(caught.value)
    assert str(path) in text and "relays" in text and "'js'" in text
    assert "'rust'" in text and "'go'" in text, text
