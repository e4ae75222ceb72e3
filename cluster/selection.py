"""Which tests a pass runs: the seed's selection rules as pure functions.

A test is named `<dialer> x <listener> (<transport>)`, or, when both sides list secure channels
and muxers, `<dialer> x <listener> (tcp, <secure channel>, <muxer>)` once per common pair. Each
runs once per (dialer NAT, listener NAT) pair and relay the pass lists; a pair other than the
default adds ` [<dialer NAT> x <listener NAT>]`, a relay other than rust ` [relay <name>]`, so
the default pass keeps its names.
Patterns are substrings. The filter selects a test when any pattern matches (an empty filter
selects all), then the ignore list drops a test when any pattern matches: ignore always wins.
`~name` stands for the patterns of alias `name` (impls.yaml `test-aliases`); `!` negates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cluster.errors import ConfigError
from cluster.models import (
    DEFAULT_RELAY,
    Contract,
    Implementation,
    ImplsFile,
    Muxer,
    Relay,
    SecureChannel,
    SelectionFile,
    TestCase,
    Theory,
    Transport,
)
from cluster.nat import DEFAULT_PRESET, PRESETS, punch_verdict

Predicate = Callable[[str], bool]


@dataclass(frozen=True)
class Selection:
    """The patterns in force for one pass, after CLI flags were applied over the YAML defaults."""

    filter: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    known_failures: tuple[str, ...] = ()
    dialer_nats: tuple[str, ...] = (DEFAULT_PRESET,)
    listener_nats: tuple[str, ...] = (DEFAULT_PRESET,)
    relays: tuple[Relay, ...] = (DEFAULT_RELAY,)


@dataclass(frozen=True)
class NatChoice:
    """The presets for each side, from `--nat`: `LIST` (both sides) or `DIALERS x LISTENERS`,
    each a comma-separated list of preset names or `all`."""

    dialer: tuple[str, ...]
    listener: tuple[str, ...]


def parse_nat(text: str, option: str = "--nat") -> NatChoice:
    """`'full-cone,symmetric'` -> both sides; `'all x symmetric'` -> every dialer preset
    against a symmetric listener. A bad name is a usage error naming the valid ones."""
    from cluster.errors import UsageError
    sides = text.split(" x ")
    if len(sides) > 2:
        raise UsageError(option, f"expected LIST or DIALERS x LISTENERS, got {text!r}")
    lists = []
    for side in sides:
        names = [part.strip() for part in side.split(",") if part.strip()]
        if not names:
            raise UsageError(option, f"an empty list of NAT presets in {text!r}; expected names "
                                     f"from {', '.join(PRESETS)}, or all")
        expanded: list[str] = []
        for name in names:
            if name == "all":
                expanded += PRESETS
            elif name in PRESETS:
                expanded.append(name)
            else:
                raise UsageError(option, f"unknown NAT preset {name!r}; expected one of "
                                         f"{', '.join(PRESETS)}, or all")
        lists.append(tuple(dict.fromkeys(expanded)))
    return NatChoice(lists[0], lists[-1])


def parse_relays(text: str, option: str = "--relay") -> tuple[Relay, ...]:
    from cluster.errors import UsageError
    names = [part.strip() for part in text.split(",") if part.strip()]
    valid = [r.value for r in Relay]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise UsageError(option, f"expected a comma-separated list of {', '.join(valid)}, "
                                 f"got {text!r}")
    return tuple(dict.fromkeys(Relay(n) for n in names))


def split_patterns(text: str) -> tuple[str, ...]:
    """`'rust-v0.53|go-v0.43'` -> `('rust-v0.53', 'go-v0.43')`; blanks are dropped."""
    return tuple(part.strip() for part in text.split("|") if part.strip())


def resolve_selection(defaults: SelectionFile, cli_filter: str | None, cli_ignore: str | None,
                      extra_known_failures: Iterable[str] = (), cli_nat: str | None = None,
                      cli_relay: str | None = None) -> Selection:
    """CLI flags override the YAML defaults independently; `None` means the flag was not given.

    A given but empty string overrides too: that is how a user bypasses a default.
    """
    filter_ = split_patterns(cli_filter) if cli_filter is not None else tuple(defaults.test_filter)
    ignore = split_patterns(cli_ignore) if cli_ignore is not None else tuple(defaults.test_ignore)
    known = tuple(dict.fromkeys([*defaults.known_failures, *extra_known_failures]))
    if cli_nat is not None:
        nat = parse_nat(cli_nat)
    else:
        nat = NatChoice(tuple(dict.fromkeys(defaults.dialer_nat or defaults.nat)),
                        tuple(dict.fromkeys(defaults.listener_nat or defaults.nat)))
    relays = (parse_relays(cli_relay) if cli_relay is not None
              else tuple(dict.fromkeys(defaults.relays)))
    return Selection(filter=filter_, ignore=ignore, known_failures=known,
                     dialer_nats=nat.dialer, listener_nats=nat.listener, relays=relays)


MAX_ALIAS_DEPTH = 64  # `~a` naming `~b` naming ... deeper than this is refused, not recursed into

# A compiled term: (test name, per-name memo of alias verdicts) -> matches?
_Node = Callable[[str, dict[str, bool]], bool]


def compile_patterns(patterns: Sequence[str], aliases: dict[str, list[str]],
                     source: str = "test selection", key: str = "pattern") -> list[Predicate]:
    """Turn patterns into predicates on test names, expanding `~alias` and `!negation`."""
    expander = _AliasExpander(aliases)
    nodes = [expander.compile(term, source, f"{key}[{index}]")
             for index, term in enumerate(patterns)]
    return [_predicate(node) for node in nodes]


def check_aliases(aliases: dict[str, list[str]], source: str = "impls.yaml") -> None:
    """Every alias names only defined aliases and none refers to itself, whether used or not."""
    expander = _AliasExpander(aliases, source)
    for alias in aliases:
        expander.compile(f"~{alias}", source, f"test-aliases.{alias}")


def _predicate(node: _Node) -> Predicate:
    return lambda name: node(name, {})


class _AliasExpander:
    """Compiles each alias once, however many patterns or aliases name it, and evaluates it once
    per test name: a chain of aliases that each name the next several times costs one visit per
    alias, not one per path through the chain (which grows exponentially with its depth)."""

    def __init__(self, aliases: dict[str, list[str]], impls_source: str = "impls.yaml"):
        self.aliases = aliases
        self.impls_source = impls_source
        self.compiled: dict[str, _Node] = {}
        self.expanding: list[str] = []  # the chain being expanded, to name a cycle

    def compile(self, term: str, source: str, key: str) -> _Node:
        bare = term.lstrip("!")
        negated = (len(term) - len(bare)) % 2 == 1
        if bare.startswith("~"):
            node = self._alias(bare[1:], source, key)
        elif not bare:
            raise ConfigError(source, key, f"the pattern {term!r} is empty after '!': expected "
                                           "a substring of test names")
        else:
            node = lambda name, memo: bare in name  # noqa: E731
        if negated:
            inner = node
            return lambda name, memo: not inner(name, memo)
        return node

    def _alias(self, alias: str, source: str, key: str) -> _Node:
        if not alias:
            raise ConfigError(source, key, "'~' must be followed by an alias name, e.g. ~rust")
        if alias in self.compiled:
            return self.compiled[alias]
        if alias in self.expanding:
            chain = " -> ".join(f"~{a}" for a in (*self.expanding[self.expanding.index(alias):],
                                                  alias))
            raise ConfigError(self.impls_source, f"test-aliases.{self.expanding[-1]}",
                              f"alias refers to itself: {chain}")
        if alias not in self.aliases:
            known = ", ".join(sorted(self.aliases)) or "none are defined"
            raise ConfigError(source, key,
                              f"unknown test alias ~{alias} (impls.yaml test-aliases: {known})")
        if len(self.expanding) >= MAX_ALIAS_DEPTH:
            chain = " -> ".join(f"~{a}" for a in self.expanding[:3])
            raise ConfigError(self.impls_source, f"test-aliases.{self.expanding[0]}",
                              f"aliases nest deeper than {MAX_ALIAS_DEPTH} levels ({chain} -> ...)")
        self.expanding.append(alias)
        parts = [self.compile(term, self.impls_source, f"test-aliases.{alias}")
                 for term in self.aliases[alias]]
        self.expanding.pop()

        def node(name: str, memo: dict[str, bool]) -> bool:
            verdict = memo.get(alias)
            if verdict is None:
                verdict = memo[alias] = any(part(name, memo) for part in parts)
            return verdict
        self.compiled[alias] = node
        return node


def any_match(predicates: Sequence[Predicate], name: str) -> bool:
    return any(p(name) for p in predicates)


def test_name(dialer: str, listener: str, variant: str, dialer_nat: str = DEFAULT_PRESET,
              listener_nat: str = DEFAULT_PRESET, relay: Relay = DEFAULT_RELAY) -> str:
    """`rust-v0.57 x go-v0.51 (quic)`, plus ` [symmetric x full-cone]` for a NAT pair other than
    the default and ` [relay go]` for a relay other than rust."""
    name = f"{dialer} x {listener} ({variant})"
    if (dialer_nat, listener_nat) != (DEFAULT_PRESET, DEFAULT_PRESET):
        name += f" [{dialer_nat} x {listener_nat}]"
    if relay != DEFAULT_RELAY:
        name += f" [relay {Relay(relay).value}]"
    return name


def theory_of(dialer_nat: str, listener_nat: str, transport: Transport) -> Theory:
    """Theory's verdict on a NAT pair (cluster/nat.py punch_verdict) as a test carries it."""
    verdict = punch_verdict(PRESETS[dialer_nat].behaviour, PRESETS[listener_nat].behaviour,
                            transport.value)
    if not verdict.possible:
        return Theory.IMPOSSIBLE
    return Theory.POSSIBLE if len(verdict.directions) == 2 else Theory.ONE_WAY


def all_test_cases(impls: ImplsFile, snapshots: dict[str, str] | None = None,
                   selection: Selection | None = None) -> list[TestCase]:
    """Every dialer x listener x transport the implementations can run, in impls.yaml order,
    once per NAT pair and relay of `selection` (default: the default pair and relay only)."""
    snapshots = snapshots or {}
    selection = selection or Selection()
    cases: list[TestCase] = []
    for relay in selection.relays:
        for dialer_nat in selection.dialer_nats:
            for listener_nat in selection.listener_nats:
                cases += _impl_cases(impls, snapshots, dialer_nat, listener_nat, relay)
    return cases


def _impl_cases(impls: ImplsFile, snapshots: dict[str, str], dialer_nat: str, listener_nat: str,
                relay: Relay) -> list[TestCase]:
    cases: list[TestCase] = []
    for dialer in impls.implementations:
        for listener in impls.implementations:
            for transport in dialer.transports:
                if transport not in listener.transports:
                    continue
                for secure, muxer in _tcp_variants(dialer, listener, transport):
                    parts = [transport.value] + [v.value for v in (secure, muxer) if v]
                    cases.append(TestCase(
                        name=test_name(dialer.id, listener.id, ", ".join(parts),
                                       dialer_nat, listener_nat, relay),
                        dialer=dialer.id, listener=listener.id, transport=transport,
                        secure_channel=secure, muxer=muxer,
                        dialer_snapshot=snapshots.get(dialer.id),
                        listener_snapshot=snapshots.get(listener.id),
                        dialer_nat=dialer_nat, listener_nat=listener_nat, relay=relay,
                        theory=theory_of(dialer_nat, listener_nat, transport),
                        dialer_contract=_marked(dialer.contract),
                        listener_contract=_marked(listener.contract)))
    return cases


def _marked(contract: Contract) -> Contract | None:
    """A test names a side's contract only when it is not ours (the default)."""
    return None if contract is Contract.HOLEPUNCH else contract


def _tcp_variants(dialer: Implementation, listener: Implementation,
                  transport: Transport) -> list[tuple[SecureChannel | None, Muxer | None]]:
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
    filter_ = compile_patterns(selection.filter, aliases, source, "test-filter")
    ignore = compile_patterns(selection.ignore, aliases, source, "test-ignore")
    known = compile_patterns(selection.known_failures, aliases, source, "known-failures")
    selected, ignored = [], 0
    for case in all_test_cases(impls, snapshots, selection):
        if filter_ and not any_match(filter_, case.name):
            continue
        if any_match(ignore, case.name):
            ignored += 1
            continue
        # theory's impossible cells are expected to fail: a pass there is the harness's bug
        if any_match(known, case.name) or case.theory is Theory.IMPOSSIBLE:
            case = case.model_copy(update={"expected_failure": True})
        selected.append(case)
    return Selected(selected, ignored)
