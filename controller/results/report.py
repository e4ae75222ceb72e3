"""Records -> results.md and the README dashboard: pure functions from data to text."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from urllib.parse import quote

from cluster.errors import ConfigError
from cluster.models import DEFAULT_RELAY, Results, Status, Summary, TestRecord
from cluster.network import DIRECT_RTT_MS, RTT_ANOMALY_SHARE
from cluster.progress import STEP_WORDS
from cluster.timings import rtt_anomaly
from controller.results.natreport import is_default_pair, render_nat_section

DASHBOARD_START = "<!--INTEROP_DASHBOARD_START-->"
DASHBOARD_END = "<!--INTEROP_DASHBOARD_END-->"

PASS, FAIL, NOT_RUN = "🟢", "🔴", "⚪"
FLAKY, KNOWN_FAILURE, UNEXPECTED_PASS, ERROR = "🟡", "🟠", "🟣", "⚫"
ANOMALY = "⚠️"

_VARIANT = re.compile(r"\(([^()]*)\)\s*$")


def summarize(records: Iterable[TestRecord], total: int, ignored: int = 0) -> Summary:
    """Counts for the summary. A known failure that fails is not a failure of the pass; one that
    passes is counted as an unexpected pass so the known-failures list can shrink. An error is
    counted as itself only, whatever the known-failures list says."""
    summary = Summary(total=total, ignored=ignored)
    for record in records:
        if record.status is Status.ERROR:
            summary.errors += 1
            continue
        if record.status is Status.FLAKY:
            summary.flaky += 1
        elif record.status is Status.PASS:
            summary.passed += 1
        elif record.expected_failure:
            summary.known_failures += 1
        else:
            summary.failed += 1
        if record.expected_failure and record.status is not Status.FAIL:
            summary.unexpected_passes += 1
    return summary


def variant_of(record: TestRecord) -> str:
    """The transport group a record's table belongs to: `tcp` or `tcp, noise, yamux`."""
    if record.transport:
        return record.transport
    match = _VARIANT.search(record.name)
    return match.group(1) if match else "unknown"


def table_of(record: TestRecord) -> str:
    """The table a record's cell is in: its transport group, and its relay unless it is the
    default (`quic (relay go)`), so that a relay's cell never takes another's place."""
    variant = variant_of(record)
    return variant if record.relay == DEFAULT_RELAY else f"{variant} (relay {record.relay.value})"


def anomaly_of(record: TestRecord) -> str | None:
    """A passing record's RTT anomaly (cluster.timings), whatever reporter wrote the record."""
    if record.status not in (Status.PASS, Status.FLAKY):
        return None
    return rtt_anomaly(record.rtt_ms)


def cell(record: TestRecord | None) -> str:
    if record is None:
        return NOT_RUN
    if record.status is Status.ERROR:
        return ERROR
    rtt = f" {record.rtt_ms:.0f}ms" if record.rtt_ms is not None else ""
    if rtt and anomaly_of(record):
        rtt += f" {ANOMALY}"
    if record.status is Status.FLAKY:
        return f"{FLAKY}{rtt}"
    if record.status is Status.PASS:
        return f"{UNEXPECTED_PASS if record.expected_failure else PASS}{rtt}"
    return KNOWN_FAILURE if record.expected_failure else FAIL


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def render_results_md(results: Results) -> str:
    meta, summary = results.metadata, results.summary
    lines = [
        "# Hole Punch Interoperability Test Results",
        "",
        f"**Test Pass**: {meta.test_pass}",
        f"**Started**: {meta.started_at or 'n/a'}",
        f"**Duration**: {meta.duration or 'n/a'}",
        "",
    ]
    if meta.partial:
        missing = len(meta.missing_tests)
        lines += [f"> ⚠️ **Partial pass**: {missing} of {summary.total} tests have no result; "
                  "this pass is not complete.", ""]
    lines += [
        "## Summary",
        "",
        f"- **Total Tests**: {summary.total}",
        f"- **Passed**: {summary.passed} ✅",
        f"- **Failed**: {summary.failed} ❌",
    ]
    if summary.flaky:
        lines.append(f"- **Flaky**: {summary.flaky} {FLAKY}")
    if summary.known_failures:
        lines.append(f"- **Known Failures**: {summary.known_failures} {KNOWN_FAILURE}")
    if summary.unexpected_passes:
        lines.append(f"- **Unexpected Passes**: {summary.unexpected_passes} {UNEXPECTED_PASS}")
    if summary.errors:
        lines.append(f"- **Errors**: {summary.errors} {ERROR}")
    if summary.ignored:
        lines.append(f"- **Ignored**: {summary.ignored}")
    lines += [f"- **Success Rate**: {_percent(summary.passed, summary.total)}", ""]

    by_variant: dict[str, dict[tuple[str, str], TestRecord]] = defaultdict(dict)
    # the seed's tables hold the default NAT pair; the NAT section below holds every pair
    for record in (r for r in results.tests if is_default_pair(r)):
        by_variant[table_of(record)][(record.dialer.version, record.listener.version)] = record
    for variant in sorted(by_variant, key=lambda v: ("(relay " in v, v)):
        table = by_variant[variant]
        impls = sorted({name for pair in table for name in pair})
        lines += [f"## Transport: {variant}", "",
                  "| Dialer ↓ \\ Listener → | " + " | ".join(impls) + " |",
                  "|---|" + "---|" * len(impls)]
        for dialer in impls:
            cells = " | ".join(cell(table.get((dialer, listener))) for listener in impls)
            lines.append(f"| **{dialer}** | {cells} |")
        lines.append("")

    lines += _failures(results) + _timings(results)
    lines += render_nat_section(results.tests, table_of)
    lines += [
        "## Legend",
        "",
        f"- {PASS} **Pass** - Test completed successfully with RTT shown",
        f"- {FAIL} **Fail** - Test failed or timed out",
        f"- {NOT_RUN} **Not Run** - Test was not executed (filtered or skipped)",
    ]
    if summary.flaky:
        lines.append(f"- {FLAKY} **Flaky** - Failed, then passed on a retry (RTT of the pass)")
    if summary.known_failures:
        lines.append(f"- {KNOWN_FAILURE} **Known Failure** - Expected to fail (known-failures); "
                     "does not fail the pass")
    if summary.unexpected_passes:
        lines.append(f"- {UNEXPECTED_PASS} **Unexpected Pass** - Listed in known-failures but "
                     "passed: remove it from the list")
    if summary.errors:
        lines.append(f"- {ERROR} **Error** - Could not be run (infrastructure fault after its "
                     "retries): no verdict on the implementations; the pass exits 3")
    if any(anomaly_of(record) for record in results.tests):
        lines.append(f"- {ANOMALY} **RTT anomaly** - Passed, but the RTT strays more than "
                     f"{RTT_ANOMALY_SHARE * 100:.0f} % from the model's {DIRECT_RTT_MS} ms "
                     "direct path")
    lines += ["", "## Test Details", "", "Full test results available in `results.yaml`", ""]
    return "\n".join(lines)


def _md(text: str, limit: int = 160) -> str:
    """A record's text inside a table cell: one line, no pipe, clipped."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failures(results: Results) -> list[str]:
    """Each failed test: why, the step it stopped at, and its evidence. Only when a record
    carries either (a results.yaml of the seed's shape renders as it always did)."""
    failed = [r for r in results.tests if r.status is Status.FAIL]
    if not any(r.failed_step or r.captures for r in failed):
        return []
    lines = ["## Failures", "", "| Test | Stopped at | Reason | Evidence |", "|---|---|---|---|"]
    for record in failed:
        step = STEP_WORDS.get(record.failed_step, record.failed_step) if record.failed_step \
            else "unknown"
        known = f" {KNOWN_FAILURE}" if record.expected_failure else ""
        evidence = ", ".join(f"`{path}`" for path in record.captures or ()) or "-"
        lines.append(f"| {_md(record.name)}{known} | {_md(step)} | {_md(record.reason or '')} "
                     f"| {evidence} |")
    return [*lines, ""]


def _timings(results: Results) -> list[str]:
    """The timings passing tests reported (folded: a full pass has dozens)."""
    timed = [r for r in results.tests if r.status in (Status.PASS, Status.FLAKY)
             and (r.time_to_direct_ms is not None or r.rtt_samples_ms or anomaly_of(r))]
    if not timed:
        return []
    lines = ["<details><summary>Timings: time to the direct connection, RTT samples</summary>",
             "", "| Test | Time to direct | RTT (median) | Samples | Note |", "|---|---|---|---|---|"]
    for record in timed:
        direct = f"{record.time_to_direct_ms:.0f} ms" if record.time_to_direct_ms is not None \
            else "-"
        rtt = f"{record.rtt_ms:.0f} ms" if record.rtt_ms is not None else "-"
        samples = ", ".join(f"{v:.0f}" for v in record.rtt_samples_ms or ()) or "-"
        note = f"{ANOMALY} {anomaly_of(record)}" if anomaly_of(record) else ""
        lines.append(f"| {_md(record.name)} | {direct} | {rtt} | {samples} | {_md(note, 200)} |")
    return [*lines, "", "</details>", ""]


def inject_dashboard(readme: str, results_md: str, source: str = "README.md",
                     html_link: str | None = None) -> str:
    """Replace what lies between the dashboard markers with results.md (less its title), led by
    a link to results.html when `html_link` (relative to the README) is given."""
    start, end = readme.find(DASHBOARD_START), readme.find(DASHBOARD_END)
    if start < 0 or end < 0:
        missing = DASHBOARD_START if start < 0 else DASHBOARD_END
        raise ConfigError(source, missing, "dashboard marker not found; add both markers "
                                           f"({DASHBOARD_START} ... {DASHBOARD_END})")
    if end < start:
        raise ConfigError(source, DASHBOARD_END, f"comes before {DASHBOARD_START}")
    body = results_md.split("\n", 1)[1] if results_md.startswith("# ") else results_md
    if html_link:
        body = (f"Details, filters and the timeline of hosts: [results.html]({quote(html_link)})"
                f"\n\n{body.strip(chr(10))}")
    return (readme[:start + len(DASHBOARD_START)] + "\n" + body.strip("\n") + "\n"
            + readme[end:])
