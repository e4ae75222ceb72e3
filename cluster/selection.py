"""Which tests a pass runs: the seed's selection rules as pure functions.

A test is named `<dialer> x <listener> (<transport>)`, or, when both sides list secure channels
and muxers, `<dialer> x <listener> (tcp, <secure channel>, <muxer>)` once per common pair.
Patterns are substrings. The filter selects a test when any pattern matches (an empty filter
selects all), then the ignore list drops a test when any pattern matches: ignore always wins.
`~name` stands for the patterns of alias `name` (impls.yaml `test-aliases`); `!` negates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from cluster.errors import ConfigError
from cluster.models import ImplsFile, Implementation, SelectionFile, TestCase, Transport

Predicate = Callable[[str], bool]


@dataclass(frozen=True)
class Selection:
    """The patterns in force for one pass, after CLI flags were applied over the YAML defaults."""

    filter: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    known_failures: tuple[str, ...] = ()


def split_patterns(text: str) -> tuple[str, ...]:
    """`'rust-v0.53|go-v0.43'` -> `('rust-v0.53', 'go-v0.43')`; blanks are dropped."""
    return tuple(part.strip() for part in text.split("|") if part.strip())


def resolve_selection(defaults: SelectionFile, cli_filter: str | None, cli_ignore: str | None,
                      extra_known_failures: Iterable[str] = ()) -> Selection:
    """CLI flags override the YAML defaults independently; `None` means the flag was not given.

    A given but empty string overrides too: that is how a user bypasses a default.
    """
    filter_ = split_patterns(cli_filter) if cli_filter is not None else tuple(defaults.test_filter)
    ignore = split_patterns(cli_ignore) if cli_ignore is not None else tuple(defaults.test_ignore)
    known = tuple(dict.fromkeys([*defaults.known_failures, *extra_known_failures]))
    return Selection(filter=filter_, ignore=ignore, known_failures=known)


def compile_patterns(patterns: Sequence[str], aliases: dict[str, list[str]],
                     source: str = "test selection") -> list[Predicate]:
    """Turn patterns into predicates on test names, expanding `~alias` and `!negation`."""
    return [_compile_term(term, aliases, source, ()) for term in patterns]


def _compile_term(term: str, aliases: dict[str, list[str]], source: str,
                  expanding: tuple[str, ...]) -> Predicate:
    if term.startswith("!"):
        inner = _compile_term(term[1:], aliases, source, expanding)
        return lambda name: not inner(name)
    if term.startswith("~"):
        alias = term[1:]
        if alias not in aliases:
            known = ", ".join(sorted(aliases)) or "none are defined"
            raise ConfigError(source, f"~{alias}",
                              f"unknown test alias (impls.yaml test-aliases: {known})")
        if alias in expanding:
            chain = " -> ".join(f"~{a}" for a in (*expanding, alias))
            raise ConfigError("impls.yaml", f"test-aliases.{alias}", f"alias refers to itself: {chain}")
        parts = [_compile_term(t, aliases, source, (*expanding, alias)) for t in aliases[alias]]
        return lambda name: any(part(name) for part in parts)
    if not term:
        raise ConfigError(source, "pattern", "an empty pattern after '!' matches nothing useful")
    return lambda name: term in name


def any_match(predicates: Sequence[Predicate], name: str) -> bool:
    return any(p(name) for p in predicates)


def test_name(dialer: str, listener: str, variant: str) -> str:
    return f"{dialer} x {listener} ({variant})"


def all_test_cases(impls: ImplsFile, snapshots: dict[str, str] | None = None) -> list[TestCase]:
    """Every dialer x listener x transport the implementations can run, in impls.yaml order."""
    snapshots = snapshots or {}
    cases: list[TestCase] = []
    for dialer in impls.implementations:
        for listener in impls.implementations:
            for transport in dialer.transports:
                if transport not in listener.transports:
                    continue
                for secure, muxer in _tcp_variants(dialer, listener, transport):
                    parts = [transport.value] + [v.value for v in (secure, muxer) if v]
                    cases.append(TestCase(
                        name=test_name(dialer.id, listener.id, ", ".join(parts)),
                        dialer=dialer.id, listener=listener.id, transport=transport,
                        secure_channel=secure, muxer=muxer,
                        dialer_snapshot=snapshots.get(dialer.id),
                        listener_snapshot=snapshots.get(listener.id)))
    return cases


def _tcp_variants(dialer: Implementation, listener: Implementation, transport: Transport):
    """(secure channel, muxer) pairs a test multiplies over; (None, None) keeps the seed's name."""
    lists_both = all((dialer.secure_channels, dialer.muxers,
                      listener.secure_channels, listener.muxers))
    if transport is not Transport.TCP or not lists_both:
        return [(None, None)]
    secures = [s for s in dialer.secure_channels if s in listener.secure_channels]
    muxers = [m for m in dialer.muxers if m in listener.muxers]
    return [(s, m) for s in secures for m in muxers]


@dataclass(frozen=True)
class Selected:
    tests: list[TestCase]
    ignored: int  # tests the filter chose but the ignore list dropped (results' `ignored`)


def select_tests(impls: ImplsFile, selection: Selection,
                 snapshots: dict[str, str] | None = None,
                 source: str = "test selection") -> Selected:
    """The tests a pass runs, each marked when a known-failures pattern names it."""
    aliases = impls.aliases()
    filter_ = compile_patterns(selection.filter, aliases, source)
    ignore = compile_patterns(selection.ignore, aliases, source)
    known = compile_patterns(selection.known_failures, aliases, source)
    selected, ignored = [], 0
    for case in all_test_cases(impls, snapshots):
        if filter_ and not any_match(filter_, case.name):
            continue
        if any_match(ignore, case.name):
            ignored += 1
            continue
        if any_match(known, case.name):
            case = case.model_copy(update={"expected_failure": True})
        selected.append(case)
    return Selected(selected, ignored)
