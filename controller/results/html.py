"""Records -> results.html: one self-contained page (inline CSS and a small inline script, nothing
fetched), readable from file:// and from inside the test-pass zip.

It shows what results.md shows (summary, a dialer x listener matrix per group, the same marks;
when the pass ran NAT pairs, a dialer NAT x listener NAT grid per implementation pair set against
theory, as results.md's NAT section), and what a table cannot: each test's details on a click
(reason, host, timings, NAT pair and theory, the tail of its log, links to its files), filters,
and a timeline of the pass: one row per worker host, one bar per test, so a slow or lost host
shows at a glance.

Every string from a record is untrusted (a reason or a log may hold `<script>`): it reaches the
page only through `_e` (html.escape) or `_href` (a relative path, percent-encoded). The script
builds no HTML from strings; it only shows, hides and marks what is rendered here.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from urllib.parse import quote

from cluster.models import DEFAULT_RELAY, Results, Status, TestRecord
from cluster.nat import PRESETS
from cluster.progress import STEP_WORDS
from cluster.timings import rtt_anomaly
from controller.results import report
from controller.results.natreport import (
    NAT_MARKS,
    has_nat_pairs,
    is_default_pair,
    nat_cell,
    nat_grids,
    nat_kind,
    theory_counts,
    theory_mark,
    theory_of_record,
)

LOG_TAIL_LINES = 40
LOG_TAIL_CHARS = 6000


@dataclass(frozen=True)
class Look:
    """How one outcome appears: results.md's mark, a label, a cell colour, a bar colour."""

    mark: str
    label: str
    cell: str     # CSS colour of a matrix cell
    bar: str      # CSS colour of a timeline bar and a legend swatch
    meaning: str  # the legend's words


# One entry per outcome: a new status needs one line here (its key is the status's value).
LOOKS: dict[str, Look] = {
    "pass": Look(report.PASS, "Pass", "#d3f2dc", "#2ea043", "passed; RTT over the direct connection"),
    "fail": Look(report.FAIL, "Fail", "#fbd5d5", "#d1242f", "failed or timed out"),
    "flaky": Look(report.FLAKY, "Flaky", "#fff1b8", "#d4a72c", "failed, then passed on a retry"),
    "known-failure": Look(report.KNOWN_FAILURE, "Known failure", "#ffe2c6", "#e16f24",
                          "expected to fail (known-failures); does not fail the pass"),
    "unexpected-pass": Look(report.UNEXPECTED_PASS, "Unexpected pass", "#eadcff", "#8250df",
                            "listed in known-failures but passed: remove it from the list"),
    "not-run": Look(report.NOT_RUN, "Not run", "#f0f1f3", "#8c959f",
                    "not executed (filtered or skipped)"),
    "error": Look(report.ERROR, "Error", "#d0d7de", "#24292f",
                  "could not be run (infrastructure fault after its retries): no verdict; "
                  "the pass exits 3"),
}
_SHOWN_ALWAYS = ("pass", "fail", "not-run")  # in the legend, as results.md

# A NAT grid's cells (natreport.nat_kind): results.md's NAT marks; red where the result is worse
# than theory, a flag colour where it is better (the harness's NAT is then not what it claims).
NAT_LOOKS: dict[str, Look] = {
    "pass": Look(NAT_MARKS["pass"], "Punched", "#d3f2dc", "", "punched; RTT over the direct path"),
    "worse": Look(NAT_MARKS["worse"], "Worse than theory", "#ff8c8c", "",
                  "failed where theory allows a punch: an implementation or interop bug "
                  "(one-way: only one side's packets can get through)"),
    "as-theory": Look(NAT_MARKS["as-theory"], "Failed as theory says", "#eaeef2", "",
                      "no punch without port prediction"),
    "better": Look(NAT_MARKS["better"], "Better than theory: harness bug", "#f0b3ff", "",
                   "punched where theory says it cannot: the harness's NAT is not what it "
                   "claims; investigate"),
    "flaky": Look(NAT_MARKS["flaky"], "Flaky", "#fff1b8", "", "failed, then punched on a retry"),
    "error": Look(NAT_MARKS["error"], "Error", "#d0d7de", "", "could not be run: no verdict"),
    "not-run": Look(NAT_MARKS["not-run"], "Not run", "#f0f1f3", "", "not executed"),
}


def outcome_of(record: TestRecord | None) -> str:
    """The key of a record's look: its status, turned by known-failures as results.md does."""
    if record is None:
        return "not-run"
    if record.expected_failure and record.status is Status.PASS:
        return "unexpected-pass"
    if record.expected_failure and record.status is Status.FAIL:
        return "known-failure"
    return record.status.value


def look_of(outcome: str) -> Look:
    return LOOKS.get(outcome) or Look("❔", outcome, "#eeeeee", "#6e7781", outcome)


_GROUP = re.compile(r"\(([^()]*)\)|\[([^\[\]]*)\]")


def group_of(record: TestRecord) -> str:
    """The matrix a record belongs to: whatever its name's parentheses and brackets hold
    (`tcp, noise, yamux`; a later `[nat pair]` becomes part of the group as it is)."""
    parts = [(paren or bracket).strip() for paren, bracket in _GROUP.findall(record.name)]
    parts = [part for part in parts if part]
    return " · ".join(parts) if parts else report.variant_of(record)


def transport_of(record: TestRecord) -> str:
    return report.variant_of(record).split(",")[0].strip() or "unknown"


def nat_pair_of(record: TestRecord) -> str:
    return f"{record.dialer_nat} x {record.listener_nat}"


def nat_pairs(results: Results) -> list[str]:
    """The NAT pairs a pass ran, dialer's then listener's in PRESETS order."""
    order = {name: n for n, name in enumerate(PRESETS)}
    pairs = {(r.dialer_nat, r.listener_nat) for r in results.tests}
    return [f"{d} x {l_}" for d, l_ in sorted(pairs, key=lambda p: (order.get(p[0], len(order)),
                                                                    order.get(p[1], len(order)),
                                                                    p))]


def _matrix_group(record: TestRecord, several_pairs: bool) -> str:
    """A record's matrix; in a pass of several NAT pairs the default pair is named too (its
    test names carry no brackets)."""
    group = group_of(record)
    if not several_pairs or not is_default_pair(record):
        return group
    first, *rest = group.split(" · ")
    return " · ".join([first, nat_pair_of(record), *rest])


def _instant(text: str | None) -> datetime | None:
    """A record's UTC ISO time, or None when it is absent or not a time."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------- the timeline, as data


@dataclass(frozen=True)
class Bar:
    index: int      # the record's position in results.tests
    start: float    # seconds from the timeline's origin
    end: float
    lane: int       # tests that overlap on one host sit on different lanes


@dataclass(frozen=True)
class Timeline:
    origin: datetime | None
    span: float                       # seconds shown
    hosts: dict[str, list[Bar]]       # host -> its bars, by start
    untimed: list[int]                # records without start and finish times


def lay_out_timeline(results: Results) -> Timeline:
    """Place every timed test on its host's row, over the pass's wall time."""
    timed: list[tuple[int, datetime, datetime]] = []
    untimed: list[int] = []
    for index, record in enumerate(results.tests):
        start, end = _instant(record.started_at), _instant(record.finished_at)
        if start and end and end >= start:
            timed.append((index, start, end))
        else:
            untimed.append(index)
    bounds = [t for _, start, end in timed for t in (start, end)]
    bounds += [t for t in (_instant(results.metadata.started_at),
                           _instant(results.metadata.completed_at)) if t and timed]
    if not bounds:
        return Timeline(None, 0.0, {}, untimed)
    origin = min(bounds)
    span = max((max(bounds) - origin).total_seconds(), 1.0)
    by_host: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for index, start, end in timed:
        by_host[results.tests[index].host or "unknown host"].append(
            (index, (start - origin).total_seconds(), (end - origin).total_seconds()))
    hosts: dict[str, list[Bar]] = {}
    for host in sorted(by_host):
        lane_ends: list[float] = []
        bars = []
        for index, start_s, end_s in sorted(by_host[host], key=lambda item: (item[1], item[2])):
            lane = next((n for n, busy in enumerate(lane_ends) if busy <= start_s), len(lane_ends))
            if lane == len(lane_ends):
                lane_ends.append(end_s)
            lane_ends[lane] = end_s
            bars.append(Bar(index, start_s, end_s, lane))
        hosts[host] = bars
    return Timeline(origin, span, hosts, untimed)


_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def ticks(span: float, most: int = 10) -> list[float]:
    step = next((s for s in _TICK_STEPS if span / s <= most), _TICK_STEPS[-1])
    return [n * step for n in range(int(span // step) + 1)]


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


# ---------------------------------------------------------------- rendering


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _href(root: str, relative: str) -> str:
    """A link to a file of the pass, relative to the page: never a scheme, never absolute."""
    path = quote(relative.lstrip("/"), safe="/._-~")
    return _e(f"{root.rstrip('/')}/{path}" if root else path)


def _rtt(record: TestRecord | None) -> str:
    if record is None or record.rtt_ms is None or record.status not in (Status.PASS, Status.FLAKY):
        return ""
    return f"{record.rtt_ms:.0f} ms"


def log_tail(text: str, lines: int = LOG_TAIL_LINES, chars: int = LOG_TAIL_CHARS) -> str:
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return tail[-chars:]


def _data(index: int | None, record: TestRecord | None, dialer: str, listener: str,
          transport: str, nat: str) -> str:
    """The attributes the script filters on and marks by."""
    test = f' data-test="{index}"' if index is not None else ""
    return (f'{test} data-outcome="{_e(outcome_of(record))}" data-dialer="{_e(dialer)}" '
            f'data-listener="{_e(listener)}" data-transport="{_e(transport)}" '
            f'data-nat="{_e(nat)}"')


def _data_of(index: int, record: TestRecord) -> str:
    return _data(index, record, record.dialer.version, record.listener.version,
                 transport_of(record), nat_pair_of(record))


def _hover(record: TestRecord) -> str:
    look = look_of(outcome_of(record))
    parts = [record.name, look.label, _rtt(record), record.host and f"on {record.host}",
             record.duration and f"in {record.duration}", record.reason, _anomaly(record),
             record.failed_step and f"stopped at {record.failed_step}"]
    return " · ".join(part for part in parts if part)


def _summary(results: Results) -> str:
    meta, summary = results.metadata, results.summary
    facts = [("Started", meta.started_at), ("Completed", meta.completed_at),
             ("Duration", meta.duration), ("Kind", meta.kind), ("Workers", meta.worker_count),
             ("Platform", meta.platform), ("OS", meta.os)]
    counts = [("Total", summary.total, ""), ("Passed", summary.passed, "pass"),
              ("Failed", summary.failed, "fail"), ("Flaky", summary.flaky, "flaky"),
              ("Known failures", summary.known_failures, "known-failure"),
              ("Unexpected passes", summary.unexpected_passes, "unexpected-pass"),
              ("Ignored", summary.ignored, "")]
    rate = f"{100 * summary.passed / summary.total:.1f}%" if summary.total else "n/a"
    out = ['<section id="summary"><h2>Summary</h2><dl class="facts">']
    out += [f"<div><dt>{name}</dt><dd>{_e(value)}</dd></div>" for name, value in facts
            if value is not None]
    out.append('</dl><ul class="counts">')
    for name, value, outcome in counts:
        if outcome and not value and outcome not in ("pass", "fail"):
            continue
        mark = f"{look_of(outcome).mark} " if outcome else ""
        out.append(f'<li class="count o-{outcome or "total"}"><b>{value}</b> {mark}{name}</li>')
    out.append(f'<li class="count"><b>{rate}</b> Success rate</li></ul>')
    if meta.partial:
        missing = "".join(f"<li>{_e(name)}</li>" for name in meta.missing_tests)
        out.append(f'<div class="partial"><b>Partial pass</b>: {len(meta.missing_tests)} of '
                   f"{summary.total} tests have no result; this pass is not complete."
                   f"<details><summary>Missing tests</summary><ul>{missing}</ul></details></div>")
    out.append("</section>")
    return "".join(out)


def _legend(results: Results) -> str:
    present = {outcome_of(record) for record in results.tests}
    keys = [key for key in LOOKS if key in present or key in _SHOWN_ALWAYS]
    keys += sorted(present - set(LOOKS))
    items = "".join(f'<li><span class="swatch o-{_e(key)}">{look_of(key).mark}</span> '
                    f"<b>{_e(look_of(key).label)}</b>: {_e(look_of(key).meaning)}</li>"
                    for key in keys)
    return f'<ul class="legend">{items}</ul>'


def _filters(results: Results) -> str:
    impls = sorted({name for r in results.tests for name in (r.dialer.version, r.listener.version)})
    transports = sorted({transport_of(r) for r in results.tests})
    present = {outcome_of(r) for r in results.tests} | {"not-run"}
    outcomes = [key for key in LOOKS if key in present] + sorted(present - set(LOOKS))
    pairs = nat_pairs(results)

    def select(key: str, label: str, options: list[tuple[str, str]]) -> str:
        items = "".join(f'<option value="{_e(value)}">{_e(text)}</option>' for value, text in options)
        return (f'<label>{label} <select id="f-{key}" name="{key}"><option value="">all</option>'
                f"{items}</select></label>")

    return ('<form id="filters" onsubmit="return false">'
            + select("impl", "Implementation", [(i, i) for i in impls])
            + select("transport", "Transport", [(t, t) for t in transports])
            + select("status", "Status", [(o, f"{look_of(o).mark} {look_of(o).label}")
                                           for o in outcomes])
            + (select("nat", "NAT pair", [(p, p) for p in pairs]) if len(pairs) > 1 else "")
            + '<button type="reset" id="f-reset">Reset</button>'
            + f'<span id="shown">{len(results.tests)} of {len(results.tests)} tests</span></form>')


def _matrices(results: Results) -> str:
    several_pairs = len(nat_pairs(results)) > 1
    by_group: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    for position, test in enumerate(results.tests):
        group = _matrix_group(test, several_pairs)
        by_group[group][(test.dialer.version, test.listener.version)] = position
    out = []
    for group in sorted(by_group):
        table = by_group[group]
        nat = nat_pair_of(results.tests[next(iter(table.values()))])
        impls = sorted({name for pair in table for name in pair})
        transport = group.split(",")[0].split(" · ")[0].strip()
        head = "".join(f'<th scope="col">{_e(impl)}</th>' for impl in impls)
        rows = []
        for dialer in impls:
            cells = []
            for listener in impls:
                index = table.get((dialer, listener))
                record = results.tests[index] if index is not None else None
                look = look_of(outcome_of(record))
                attrs = _data(index, record, dialer, listener,
                              transport_of(record) if record else transport, nat)
                if record is None:
                    cells.append(f'<td class="cell o-not-run"{attrs} title="not run">{look.mark}</td>')
                    continue
                rtt = _rtt(record)
                cells.append(
                    f'<td class="cell o-{_e(outcome_of(record))}"{attrs} title="{_e(_hover(record))}">'
                    f'<a href="#test-{index}">{look.mark}'
                    f'{f" <span class=rtt>{_e(rtt)}</span>" if rtt else ""}</a></td>')
            rows.append(f'<tr><th scope="row">{_e(dialer)}</th>{"".join(cells)}</tr>')
        out.append(f'<section class="matrix" data-group="{_e(group)}"><h3>Transport: {_e(group)}</h3>'
                   f'<table><thead><tr><th class="corner">Dialer ↓ \\ Listener →</th>{head}</tr>'
                   f'</thead><tbody>{"".join(rows)}</tbody></table></section>')
    return "".join(out) or "<p>No test has a result.</p>"


def _theory_words(record: TestRecord) -> str | None:
    """Theory's verdict on a record's NAT pair and how the result stands against it."""
    theory = theory_of_record(record)
    if theory is None:
        return None
    against = {"worse": f"{NAT_MARKS['worse']} worse than theory: an implementation or interop bug",
               "better": f"{NAT_MARKS['better']} better than theory: a harness bug to investigate "
                         "(its NAT is not what it claims)"}.get(theory_mark(record) or "",
                                                                "the result is as theory says")
    return f"{theory.value}; {against}" if record.status is not Status.ERROR else theory.value


def _nat_view(results: Results) -> str:
    """Per transport, a dialer NAT x listener NAT grid per implementation pair (results.md's
    NAT section, cells from natreport), each cell a link to its test's details."""
    if not has_nat_pairs(results.tests):
        return ""
    records = results.tests
    counts = theory_counts(records)
    legend = "".join(f'<li><span class="swatch n-{key}">{look.mark}</span> <b>{_e(look.label)}</b>: '
                     f"{_e(look.meaning)}</li>" for key, look in NAT_LOOKS.items())
    worse, better = NAT_MARKS["worse"], NAT_MARKS["better"]
    out = ['<section id="nat"><h2>NAT pairs</h2><p class="note">Per transport and implementation '
           "pair: rows are the dialer's NAT, columns the listener's; each cell says what theory "
           "(router/README.md) expects of its pair. Click a cell for its details.</p>"
           f'<ul class="counts"><li class="count n-worse"><b>{counts.worse}</b> {worse} Worse '
           f'than theory</li><li class="count n-better"><b>{counts.better}</b> {better} Better '
           f'than theory (harness bug)</li></ul><ul class="legend">{legend}</ul>']
    by_variant: dict[str, list[str]] = defaultdict(list)
    for grid in nat_grids(records, report.variant_of):
        head = "".join(f'<th scope="col">{_e(nat)}</th>' for nat in grid.listener_nats)
        rows = []
        for d in grid.dialer_nats:
            cells = []
            for l_ in grid.listener_nats:
                index = grid.cells.get((d, l_))
                record = grid.record(records, d, l_)
                kind = nat_kind(record)
                attrs = _data(index, record, grid.dialer, grid.listener,
                              grid.variant.split(",")[0].strip(), f"{d} x {l_}")
                if record is None:
                    cells.append(f'<td class="natcell n-{kind}"{attrs} title="not run">'
                                 f"{NAT_LOOKS[kind].mark}</td>")
                    continue
                theory = theory_of_record(record)
                hover = " · ".join(part for part in (
                    _hover(record), NAT_LOOKS[kind].label,
                    theory and f"theory: {theory.value}") if part)
                cells.append(
                    f'<td class="natcell n-{kind}"{attrs} title="{_e(hover)}">'
                    f'<a href="#test-{index}">{_e(nat_cell(record))}'
                    f'<small class="theory">theory: {_e(theory.value if theory else "?")}</small>'
                    "</a></td>")
            rows.append(f'<tr><th scope="row">{_e(d)}</th>{"".join(cells)}</tr>')
        by_variant[grid.variant].append(
            f'<section class="natgrid"><h4>{_e(grid.dialer)} x {_e(grid.listener)}</h4><table>'
            f'<thead><tr><th class="corner">Dialer NAT ↓ \\ Listener NAT →</th>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></section>')
    for variant, grids in sorted(by_variant.items()):
        out.append(f'<div class="natgroup"><h3>Transport: {_e(variant)}</h3>'
                   f'<div class="matrices">{"".join(grids)}</div></div>')
    out.append("</section>")
    return "".join(out)


def _timeline(results: Results) -> str:
    layout = lay_out_timeline(results)
    out = ['<section id="timeline"><h2>Timeline</h2>']
    if layout.origin is not None:
        origin = layout.origin.strftime("%Y-%m-%d %H:%M:%S UTC")
        out.append(f'<p class="note">One row per worker host, one bar per test over the pass\'s '
                   f"wall time (from {_e(origin)}, {_clock(layout.span)} shown). Click a bar for "
                   "its details.</p>")
        axis = "".join(f'<span class="tick{" end" if t > 0.9 * layout.span else ""}" '
                       f'style="left:{100 * t / layout.span:.3f}%">{_clock(t)}</span>'
                       for t in ticks(layout.span))
        out.append(f'<div class="trow axis"><div class="thost"></div><div class="ttrack">{axis}'
                   "</div></div>")
    grid = "".join(f'<span class="grid" style="left:{100 * t / layout.span:.3f}%"></span>'
                   for t in ticks(layout.span)) if layout.hosts else ""
    for host, bars in layout.hosts.items():
        lanes = max(bar.lane for bar in bars) + 1
        busy = sum(bar.end - bar.start for bar in bars)
        failed = sum(outcome_of(results.tests[bar.index]) == "fail" for bar in bars)
        label = (f"<b>{_e(host)}</b><small>{len(bars)} tests · {failed} failed · "
                 f"busy {busy:.0f} s</small>")
        items = []
        for bar in bars:
            record = results.tests[bar.index]
            left, width = 100 * bar.start / layout.span, 100 * (bar.end - bar.start) / layout.span
            items.append(
                f'<a class="bar o-{_e(outcome_of(record))}" href="#test-{bar.index}"'
                f"{_data_of(bar.index, record)}"
                f' style="left:{left:.3f}%;width:max({width:.3f}%,3px);top:{bar.lane * 22 + 2}px"'
                f' title="{_e(_hover(record))}">{_e(record.dialer.version)} x '
                f"{_e(record.listener.version)} ({_e(transport_of(record))})</a>")
        out.append(f'<div class="trow" data-host="{_e(host)}"><div class="thost">{label}</div>'
                   f'<div class="ttrack" style="height:{lanes * 22 + 4}px">{grid}{"".join(items)}'
                   "</div></div>")
    if layout.untimed:
        names = "".join(f'<li><a href="#test-{i}">{_e(results.tests[i].name)}</a></li>'
                        for i in layout.untimed)
        one = len(layout.untimed) == 1
        what = "1 test has" if one else f"{len(layout.untimed)} tests have"
        out.append(f'<details class="note"><summary>{what} no start and finish times (an older '
                   f"worker, or the host never ran it) and {'is' if one else 'are'} not on the "
                   f"timeline</summary><ul>{names}</ul></details>")
    out.append("</section>")
    return "".join(out)


def _test_list(results: Results) -> str:
    nat_pass = has_nat_pairs(results.tests)
    rows = []
    for index, record in enumerate(results.tests):
        look = look_of(outcome_of(record))
        reason = record.reason or ""
        short = reason if len(reason) <= 140 else reason[:139] + "…"
        kind = nat_kind(record)
        verdict = (f'<td class="n-{kind}">{NAT_LOOKS[kind].mark} {_e(NAT_LOOKS[kind].label)}</td>'
                   if nat_pass else "")
        rows.append(
            f'<tr class="test"{_data_of(index, record)}>'
            f'<td><a href="#test-{index}">{_e(record.name)}</a></td>'
            f'<td class="o-{_e(outcome_of(record))}">{look.mark} {_e(look.label)}</td>{verdict}'
            f"<td>{_e(_rtt(record))}</td><td>{_e(record.host)}</td><td>{_e(record.duration)}</td>"
            f"<td>{record.attempts}</td><td class=\"reason\">{_e(short)}</td></tr>")
    return ('<section id="tests"><h2>Tests</h2><table class="list"><thead><tr><th>Test</th>'
            f"<th>Status</th>{'<th>Against theory</th>' if nat_pass else ''}<th>RTT</th>"
            "<th>Host</th><th>Duration</th><th>Attempts</th>"
            f'<th>Reason</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>')


# Optional record fields shown in the details when a record has them (newer workers add them).
_OPTIONAL = (("time_to_direct_ms", "Time to direct connection", "{:.0f} ms"),)


def _timing_facts(record: TestRecord) -> list[tuple[str, str]]:
    """What the details add from a record's timings, failed step and anomaly."""
    facts: list[tuple[str, str]] = []
    if record.rtt_samples_ms:
        facts.append(("RTT samples", ", ".join(f"{v:.1f}" for v in record.rtt_samples_ms) + " ms"
                      + " (the RTT is their median)"))
    anomaly = _anomaly(record)
    if anomaly:
        facts.append(("⚠️ RTT anomaly", anomaly))
    if record.failed_step:
        facts.append(("Stopped at", f"{record.failed_step}: "
                                    f"{STEP_WORDS.get(record.failed_step, record.failed_step)}"))
    return facts


def _anomaly(record: TestRecord) -> str | None:
    """The record's RTT anomaly, computed again (a results.yaml from an older reporter has none)."""
    if record.status not in (Status.PASS, Status.FLAKY):
        return None
    return rtt_anomaly(record.rtt_ms)


def _capture_label(path: str) -> str:
    """`captures/<stem>.dialer_router.pcap` -> `capture dialer_router` (`key log dialer`); a
    failed attempt's `captures/<stem>.attempt-1.dialer.keys` -> `key log dialer (attempt 1)`."""
    rest, _, kind = path.rsplit("/", 1)[-1].rpartition(".")
    rest, _, source = rest.rpartition(".")
    attempt = rest.rpartition(".")[2]
    of_attempt = f" ({attempt.replace('-', ' ')})" if re.fullmatch(r"attempt-\d+", attempt) else ""
    return f"{'capture' if kind == 'pcap' else 'key log'} {source}{of_attempt}"


def _nat_facts(record: TestRecord, nat_pass: bool) -> list[tuple[str, str | None]]:
    """The NAT pair, relay and theory: in a pass of NAT pairs, or for a relay not the default."""
    facts: list[tuple[str, str | None]] = []
    if nat_pass:
        facts += [("NAT pair", f"{record.dialer_nat} (dialer) x {record.listener_nat} (listener)"),
                  ("Theory", _theory_words(record))]
    if nat_pass or record.relay != DEFAULT_RELAY:
        facts.append(("Relay", getattr(record.relay, "value", record.relay)))
    return facts


def _details(results: Results, logs: Mapping[str, str], root: str,
             linked: Collection[str] | None) -> str:
    articles = []
    nat_pass = has_nat_pairs(results.tests)
    for index, record in enumerate(results.tests):
        look = look_of(outcome_of(record))
        rtt_name = "RTT (median)" if record.rtt_samples_ms else "RTT"
        facts = [("Status", f"{look.mark} {look.label}"), ("Reason", record.reason),
                 (rtt_name, _rtt(record) or None), ("Host", record.host),
                 ("Duration", record.duration), ("Attempts", record.attempts),
                 ("Started", record.started_at), ("Finished", record.finished_at),
                 ("Exit code", record.exit_code), ("Transport", group_of(record)),
                 ("Dialer", record.dialer.version), ("Listener", record.listener.version),
                 *_nat_facts(record, nat_pass)]
        for attribute, name, form in _OPTIONAL:
            value = getattr(record, attribute, None)
            if isinstance(value, (int, float)):
                facts.append((name, form.format(value)))
        facts += _timing_facts(record)
        rows = "".join(f"<dt>{name}</dt><dd>{_e(value)}</dd>" for name, value in facts
                       if value is not None and value != "")
        files = [("log", record.log_file), ("compose file", record.docker_compose),
                 *((_capture_label(path), path) for path in record.captures or ())]
        links = [f'<a href="{_href(root, path)}">{_e(label)}</a>'
                 for label, path in files if path and (linked is None or path in linked)]
        tail = log_tail(logs.get(record.log_file or "", "")) if record.log_file else ""
        log = (f'<h4>Last lines of the log</h4><pre class="log">{_e(tail)}</pre>' if tail
               else '<p class="note">No log in this folder.</p>')
        articles.append(
            f'<article class="detail" id="detail-{index}" hidden><h3>{_e(record.name)}</h3>'
            f'<dl class="kv">{rows}</dl>'
            f'<p class="links">{" · ".join(links) or "no files linked"}</p>{log}</article>')
    return ('<aside id="details" hidden><button type="button" id="close" title="Close (Esc)">×'
            f'</button>{"".join(articles)}</aside>')


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
  background:#fff}
main{padding:16px 24px;max-width:1600px}
body.open main{margin-right:min(40vw,620px)}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:24px 0 8px}h3{font-size:15px;margin:16px 0 6px}
.note{color:#57606a;font-size:13px}
.facts{display:flex;flex-wrap:wrap;gap:4px 20px;margin:0}.facts div{display:flex;gap:6px}
.facts dt{color:#57606a}.facts dd{margin:0;font-weight:600}
.counts{display:flex;flex-wrap:wrap;gap:8px;list-style:none;padding:0;margin:10px 0}
.count{border:1px solid #d0d7de;border-radius:6px;padding:4px 10px;background:#f6f8fa}
.count b{font-size:16px}
.partial{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px}
.legend{display:flex;flex-wrap:wrap;gap:4px 18px;list-style:none;padding:0;font-size:13px}
.swatch{display:inline-block;min-width:22px;text-align:center;border-radius:4px}
#filters{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #d0d7de;
  padding:8px 0;display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center}
#filters select{font:inherit;padding:2px 4px}#shown{color:#57606a}
.matrices{display:flex;flex-wrap:wrap;gap:8px 32px;align-items:flex-start}
table{border-collapse:collapse}
.matrix th,.matrix td{border:1px solid #d0d7de;padding:5px 8px;text-align:center;white-space:nowrap}
.matrix thead th{background:#f6f8fa;font-weight:600}.matrix tbody th{text-align:left;background:#f6f8fa}
.corner{font-weight:400;color:#57606a;font-size:12px}
.cell{min-width:86px}.cell a{color:inherit;text-decoration:none;display:block}
.cell .rtt{font-variant-numeric:tabular-nums}
.natgrid th,.natgrid td{border:1px solid #d0d7de;padding:4px 8px;text-align:center;white-space:nowrap}
.natgrid thead th,.natgrid tbody th{background:#f6f8fa;font-weight:600;font-size:12px}
.natgrid h4{margin:8px 0 4px;font-size:14px}
.natcell{min-width:96px}.natcell a{color:inherit;text-decoration:none;display:block}
.natcell .theory{display:block;font-size:11px;color:#57606a}
.natcell.n-worse{font-weight:700;box-shadow:inset 0 0 0 2px #d1242f}
.natcell.n-better{font-weight:700;box-shadow:inset 0 0 0 2px #8250df;
  background-image:repeating-linear-gradient(45deg,transparent 0 6px,rgba(130,80,223,.15) 6px 12px)}
.off{opacity:.18}
.selected{outline:3px solid #0969da;outline-offset:-3px}
.trow{display:flex;align-items:stretch;border-bottom:1px solid #eaeef2}
.thost{flex:0 0 190px;padding:4px 8px;display:flex;flex-direction:column;justify-content:center}
.thost small{color:#57606a}
.ttrack{position:relative;flex:1;min-height:26px}
.grid{position:absolute;top:0;bottom:0;border-left:1px solid #eaeef2}
.axis .ttrack{height:20px;background:none}.tick{position:absolute;top:0;font-size:11px;color:#57606a;
  border-left:1px solid #d0d7de;padding-left:2px}
.tick.end{transform:translateX(-100%);border-left:0;border-right:1px solid #d0d7de;padding:0 2px 0 0}
.bar{position:absolute;height:18px;border-radius:3px;color:#fff;font-size:11px;line-height:18px;
  padding:0 4px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;text-decoration:none;
  border:1px solid rgba(0,0,0,.25)}
.bar.off{opacity:.12}
.list th,.list td{border-bottom:1px solid #eaeef2;padding:3px 8px;text-align:left;vertical-align:top;
  white-space:nowrap}
.list td.reason{white-space:normal}
.list .reason{color:#57606a;max-width:520px}
#details{position:fixed;top:0;right:0;bottom:0;width:min(40vw,620px);overflow:auto;background:#fff;
  border-left:1px solid #d0d7de;box-shadow:-4px 0 12px rgba(0,0,0,.08);padding:12px 16px;z-index:3}
#close{float:right;font-size:20px;border:0;background:none;cursor:pointer}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}.kv dt{color:#57606a}
.kv dd{margin:0;word-break:break-word}
.log{background:#0d1117;color:#e6edf3;padding:8px;border-radius:6px;font-size:12px;
  white-space:pre-wrap;overflow-wrap:anywhere;max-height:60vh;overflow:auto}
"""

_SCRIPT = """
(function () {
  "use strict";
  function all(selector) { return Array.prototype.slice.call(document.querySelectorAll(selector)); }
  var pick = {impl: document.getElementById("f-impl"),
              transport: document.getElementById("f-transport"),
              status: document.getElementById("f-status"),
              nat: document.getElementById("f-nat")};  // only in a pass of several NAT pairs
  if (!pick.nat) { delete pick.nat; }
  var tests = all("tr.test").length;
  function wanted(el) {
    var impl = pick.impl.value, transport = pick.transport.value, outcome = pick.status.value;
    var nat = pick.nat ? pick.nat.value : "";
    return (!impl || el.dataset.dialer === impl || el.dataset.listener === impl) &&
      (!transport || el.dataset.transport === transport) &&
      (!outcome || el.dataset.outcome === outcome) && (!nat || el.dataset.nat === nat);
  }
  function filter() {
    all("[data-outcome]").forEach(function (el) { el.classList.toggle("off", !wanted(el)); });
    all("section.matrix, section.natgrid").forEach(function (m) {
      m.hidden = !m.querySelector("td[data-outcome]:not(.off)");
    });
    all(".natgroup").forEach(function (g) { g.hidden = !g.querySelector("section.natgrid:not([hidden])"); });
    all("tr.test").forEach(function (row) { row.hidden = row.classList.contains("off"); });
    document.getElementById("shown").textContent =
      all("tr.test:not(.off)").length + " of " + tests + " tests";
  }
  function showDetails() {
    var match = /^#test-([0-9]+)$/.exec(location.hash);
    var detail = match && document.getElementById("detail-" + match[1]);
    all(".detail").forEach(function (d) { d.hidden = true; });
    all(".selected").forEach(function (el) { el.classList.remove("selected"); });
    document.getElementById("details").hidden = !detail;
    document.body.classList.toggle("open", !!detail);
    if (!detail) { return; }
    detail.hidden = false;
    all('[data-test="' + match[1] + '"]').forEach(function (el) { el.classList.add("selected"); });
  }
  function close() { if (location.hash) { location.hash = ""; } showDetails(); }
  var params = new URLSearchParams(location.search);
  Object.keys(pick).forEach(function (key) {
    if (params.has(key)) { pick[key].value = params.get(key); }
    pick[key].addEventListener("change", filter);
  });
  document.getElementById("filters").addEventListener("reset", function () { setTimeout(filter, 0); });
  document.getElementById("close").addEventListener("click", close);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") { close(); } });
  window.addEventListener("hashchange", showDetails);
  filter();
  showDetails();
  document.body.setAttribute("data-ready", "yes");
})();
"""


def _outcome_css() -> str:
    return "".join(f".o-{key},.swatch.o-{key}{{background:{look.cell}}}.bar.o-{key}"
                   f"{{background:{look.bar}}}" for key, look in LOOKS.items()) + "".join(
        f".n-{key}{{background-color:{look.cell}}}" for key, look in NAT_LOOKS.items())


def render_results_html(results: Results, logs: Mapping[str, str] | None = None, *,
                        root: str = "", linked: Collection[str] | None = None) -> str:
    """The page. `logs`: log text by a record's logFile (its tail is shown); `root`: the folder
    of the pass's files relative to the page; `linked`: the files that exist there (None: all)."""
    meta = results.metadata
    title = f"Hole punch results: {meta.test_pass}"
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}{_outcome_css()}</style></head><body><main>",
        f"<h1>Hole Punch Interoperability Test Results</h1><p class=\"note\">Test pass "
        f"<b>{_e(meta.test_pass)}</b> · from results.yaml beside this page</p>",
        "<noscript><p class=\"partial\">The details, filters and highlights need JavaScript; "
        "the tables and the timeline are all here without it.</p></noscript>",
        _summary(results), _filters(results), '<h2>Matrix</h2>', _legend(results),
        f'<div class="matrices">{_matrices(results)}</div>', _nat_view(results), _timeline(results),
        _test_list(results), "</main>", _details(results, logs or {}, root, linked),
        f"<script>{_SCRIPT}</script></body></html>\n"])


# ---------------------------------------------------------------- the files beside a results.yaml


def files_beside(results: Results, folder: Path) -> tuple[dict[str, str], set[str]]:
    """The logs and files of a pass found in its folder: (log text by logFile, paths that exist).

    A record's paths are untrusted: only files inside `folder` are read or linked.
    """
    logs: dict[str, str] = {}
    present: set[str] = set()
    top = folder.resolve()
    for record in results.tests:
        for relative in (record.log_file, record.docker_compose, *(record.captures or ())):
            if not relative:
                continue
            try:
                path = (folder / relative).resolve()
                if not path.is_relative_to(top) or not path.is_file():
                    continue
            except (OSError, ValueError):  # a name too long, a NUL byte: no file of ours
                continue
            present.add(relative)
            if relative == record.log_file:
                logs[relative] = path.read_text(encoding="utf-8", errors="replace")
    return logs, present


def link_from(readme: Path, page: Path) -> str:
    """The page's path as a link from the README's folder (the dashboard points at it)."""
    return Path(os.path.relpath(page.resolve(), readme.resolve().parent)).as_posix()
