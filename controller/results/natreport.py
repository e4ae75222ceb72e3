"""results.md's NAT section: per implementation pair and transport, which NAT pairs punch,
each cell set against theory's verdict (cluster/nat.py) so a gap shows at a glance.

Worse than theory (a fail where theory says a punch can work) is an implementation or interop
bug: red. Better than theory (a pass where theory says it cannot) means the harness's NAT is not
what it claims: flagged, never hidden. Pure: records in, lines out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cluster.models import Status, TestRecord, Theory, Transport
from cluster.nat import DEFAULT_PRESET, PRESETS
from cluster.selection import theory_of

WORSE, BETTER, AS_THEORY_NO = "🔴", "❗", "⛔"
PASS, FLAKY, ERROR, NOT_RUN = "🟢", "🟡", "⚫", "⚪"


def is_default_pair(record: TestRecord) -> bool:
    return (record.dialer_nat, record.listener_nat) == (DEFAULT_PRESET, DEFAULT_PRESET)


def theory_of_record(record: TestRecord) -> Theory | None:
    """The record's theory; a default-pair record keeps the seed's shape without it, so its
    verdict comes from its pair and transport (None: a transport theory does not know)."""
    if record.theory is not None:
        return record.theory
    transport = (record.transport or "").split(",")[0].strip()
    if transport not in [t.value for t in Transport]:
        return None
    return theory_of(record.dialer_nat, record.listener_nat, Transport(transport))


def theory_mark(record: TestRecord) -> str | None:
    """`worse`, `better` or None (as theory says, or no verdict: an error, no theory)."""
    theory = theory_of_record(record)
    if theory is None or record.status is Status.ERROR:
        return None
    passed = record.status in (Status.PASS, Status.FLAKY)
    if passed and theory is Theory.IMPOSSIBLE:
        return "better"
    if not passed and theory is not Theory.IMPOSSIBLE:
        return "worse"
    return None


def nat_kind(record: TestRecord | None) -> str:
    """What a NAT cell says of a record: `pass`, `flaky`, `worse` (a fail where theory allows
    a punch), `better` (a pass where theory says it cannot), `as-theory` (a fail theory
    expects), `error` or `not-run`. results.md and results.html both mark cells by it."""
    if record is None:
        return "not-run"
    if record.status is Status.ERROR:
        return "error"
    mark = theory_mark(record)
    if mark == "better":
        return "better"
    if record.status in (Status.PASS, Status.FLAKY):
        return "flaky" if record.status is Status.FLAKY else "pass"
    return "worse" if mark == "worse" else "as-theory"


NAT_MARKS = {"pass": PASS, "flaky": FLAKY, "worse": WORSE, "better": BETTER,
             "as-theory": AS_THEORY_NO, "error": ERROR, "not-run": NOT_RUN}


def nat_cell(record: TestRecord | None) -> str:
    kind = nat_kind(record)
    text = NAT_MARKS[kind]
    if record is not None and kind in ("pass", "flaky", "better") and record.rtt_ms is not None:
        text += f" {record.rtt_ms:.0f}ms"
    if record is not None and kind == "worse" and theory_of_record(record) is Theory.ONE_WAY:
        text += " (one-way)"
    return text


@dataclass(frozen=True)
class TheoryCounts:
    worse: int
    better: int


def theory_counts(records: Iterable[TestRecord]) -> TheoryCounts:
    marks = [theory_mark(r) for r in records]
    return TheoryCounts(marks.count("worse"), marks.count("better"))


def has_nat_pairs(records: Iterable[TestRecord]) -> bool:
    """Whether a pass ran a NAT pair other than the default (then it has a NAT section)."""
    return not all(is_default_pair(r) for r in records)


@dataclass(frozen=True)
class NatGrid:
    """One implementation pair over one transport: the NAT pairs it ran, rows the dialer's NAT
    and columns the listener's (in PRESETS order), each cell a position in the records."""

    variant: str
    dialer: str
    listener: str
    dialer_nats: list[str]
    listener_nats: list[str]
    cells: dict[tuple[str, str], int]

    def record(self, records: Sequence[TestRecord], dialer_nat: str,
               listener_nat: str) -> TestRecord | None:
        index = self.cells.get((dialer_nat, listener_nat))
        return None if index is None else records[index]


def nat_grids(records: Sequence[TestRecord], variant_of) -> list[NatGrid]:
    """The NAT grids of a pass, by transport, then dialer, then listener."""
    cells: dict[tuple[str, str, str], dict[tuple[str, str], int]] = defaultdict(dict)
    for index, record in enumerate(records):
        key = (variant_of(record), record.dialer.version, record.listener.version)
        cells[key][(record.dialer_nat, record.listener_nat)] = index
    grids = []
    for (variant, dialer, listener), grid in sorted(cells.items()):
        d_nats, l_nats = _sides(grid)
        grids.append(NatGrid(variant, dialer, listener, d_nats, l_nats, grid))
    return grids


def render_nat_section(records: list[TestRecord], variant_of) -> list[str]:
    """The section's lines; none when every record ran the default NAT pair (a default pass's
    results.md stays as it was)."""
    if not has_nat_pairs(records):
        return []
    counts = theory_counts(records)
    lines = ["## NAT pairs", "",
             "Per implementation pair and transport: rows are the dialer's NAT, columns the "
             "listener's (router/README.md has theory's table and its reasons).", "",
             f"- **Worse than theory**: {counts.worse} {WORSE} (theory says a punch can work: an "
             "implementation or interop bug; `(one-way)`: only one side's packets can get through)",
             f"- **Better than theory**: {counts.better} {BETTER} (theory says it cannot: the "
             "harness's NAT is not what it claims; investigate)", ""]
    lines += _overview(records, variant_of)
    for grid in nat_grids(records, variant_of):
        lines += _grid_header(f"{grid.dialer} x {grid.listener} ({grid.variant})",
                              grid.listener_nats)
        for d in grid.dialer_nats:
            cells = (nat_cell(grid.record(records, d, l_)) for l_ in grid.listener_nats)
            lines.append(f"| **{d}** | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"NAT legend: {PASS} punched (RTT), {WORSE} failed where theory allows a punch, "
              f"{AS_THEORY_NO} failed as theory says (no punch without port prediction), "
              f"{BETTER} punched where theory says it cannot (harness bug), {FLAKY} flaky, "
              f"{ERROR} error, {NOT_RUN} not run.", ""]
    return lines


def _sides(pairs) -> tuple[list[str], list[str]]:
    """The dialer and the listener presets of (dialer NAT, listener NAT) keys, in PRESETS order."""
    return ([n for n in PRESETS if any(d == n for d, _ in pairs)],
            [n for n in PRESETS if any(l_ == n for _, l_ in pairs)])


def _grid_header(title: str, listener_nats: list[str]) -> list[str]:
    return [f"### {title}", "",
            "| dialer NAT ↓ \\ listener NAT → | " + " | ".join(listener_nats) + " |",
            "|---|" + "---|" * len(listener_nats)]


def _overview(records: list[TestRecord], variant_of) -> list[str]:
    """Per transport, each NAT pair's punches over all implementation pairs: `passed/run`,
    with theory's word and the count of cells worse (🔴) or better (❗) than theory."""
    by_variant: dict[str, dict[tuple[str, str], list[TestRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_variant[variant_of(record)][(record.dialer_nat, record.listener_nat)].append(record)
    lines: list[str] = []
    for variant, pairs in sorted(by_variant.items()):
        d_nats, l_nats = _sides(pairs)
        lines += _grid_header(f"All implementation pairs ({variant}): punched / run", l_nats)
        for d in d_nats:
            cells = []
            for l_ in l_nats:
                group = pairs.get((d, l_), [])
                if not group:
                    cells.append(NOT_RUN)
                    continue
                punched = sum(r.status in (Status.PASS, Status.FLAKY) for r in group)
                counts = theory_counts(group)
                verdict = theory_of_record(group[0])
                theory = verdict.value if verdict else "?"
                flags = (f" {WORSE}{counts.worse}" if counts.worse else "") + (
                    f" {BETTER}{counts.better}" if counts.better else "")
                cells.append(f"{punched}/{len(group)} ({theory}){flags}")
            lines.append(f"| **{d}** | " + " | ".join(cells) + " |")
        lines.append("")
    return lines
