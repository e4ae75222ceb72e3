"""results.html: escaping of untrusted record strings, the marks table, matrices, the timeline's
layout, and where the page is written (report command, finish, the zip)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from cluster.errors import EXIT_OK
from cluster.models import (
    PeerRecord,
    Results,
    ResultsMetadata,
    Status,
    TestRecord,
    Theory,
    Transport,
    capture_file_name,
    log_file_name,
    to_yaml_data,
)
from cluster.selection import test_name as name_of_test
from cluster.selection import theory_of
from cluster.yamlio import dump_yaml, load_model
from controller.results import report
from controller.results.html import (
    LOOKS,
    NAT_LOOKS,
    group_of,
    lay_out_timeline,
    look_of,
    outcome_of,
    render_results_html,
    ticks,
)
from controller.results.natreport import nat_cell
from controller.results.report import DASHBOARD_END, DASHBOARD_START

GOLDEN = Path(__file__).parent / "golden"


def record(name: str, status: Status = Status.PASS, *, expected: bool = False,
           start: str | None = None, end: str | None = None, host: str | None = "h1",
           **extra) -> TestRecord:
    """Built without validation: the page must stay safe even for a record that would fail it
    (hostile names and paths; the reporter and `report` refuse such records first)."""
    dialer, rest = name.split(" x ", 1)
    return TestRecord.model_construct(
        name=name, status=status, expected_failure=expected, host=host,
        rtt_ms=201.4 if status in (Status.PASS, Status.FLAKY) else None,
        dialer=PeerRecord.model_construct(version=dialer),
        listener=PeerRecord.model_construct(version=rest.split()[0]),
        started_at=start, finished_at=end, **extra)


def results_of(*records: TestRecord) -> Results:
    meta = ResultsMetadata(test_pass="hole-punch-full-000000-01-12-2026",
                           started_at="2026-12-01T10:00:00Z", completed_at="2026-12-01T10:01:00Z")
    return Results(metadata=meta, summary=report.summarize(records, total=len(records)),
                   tests=list(records))


HOSTILE = '<script>alert("x")</script>'


def test_every_string_from_a_record_renders_as_text() -> None:
    bad = record(f"a{HOSTILE} x b (tcp)", Status.FAIL, host='h"><img src=x onerror=alert(1)>',
                 reason=f"died {HOSTILE}", duration="<b>1s</b>",
                 log_file="logs/a.log", docker_compose="docker-compose/c.yaml")
    page = render_results_html(results_of(bad), {"logs/a.log": f"line\n</pre>{HOSTILE}\n"})
    assert page.count("<script") == 1  # ours, at the end
    assert "<img" not in page and "<b>1s" not in page and "</pre><script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "died &lt;script&gt;" in page and "&lt;/pre&gt;&lt;script&gt;" in page


def test_a_record_path_never_becomes_a_script_or_absolute_link() -> None:
    bad = record("a x b (tcp)", Status.FAIL, log_file="javascript:alert(1)",
                 docker_compose="/etc/passwd")
    page = render_results_html(results_of(bad))
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert "javascript%3Aalert%281%29" in hrefs and "etc/passwd" in hrefs
    assert not [h for h in hrefs if h.startswith(("javascript:", "/")) or ":" in h]


def test_links_only_to_files_that_are_there_relative_to_the_page() -> None:
    one = record("a x b (tcp)", log_file="logs/a_x_b_tcp.log",
                 docker_compose="docker-compose/d.yaml")
    page = render_results_html(results_of(one), root="../out", linked={"logs/a_x_b_tcp.log"})
    assert 'href="../out/logs/a_x_b_tcp.log"' in page and "docker-compose/d.yaml" not in page


def test_every_status_has_a_look_and_the_marks_of_results_md() -> None:
    records = [record(f"a x b ({status.value})", status, expected=expected)
               for status in Status for expected in (False, True)]
    for one in records:
        assert outcome_of(one) in LOOKS, f"add a LOOKS entry for {outcome_of(one)!r}"
        assert look_of(outcome_of(one)).mark == report.cell(one).split()[0]
    assert look_of(outcome_of(None)).mark == report.cell(None)


def test_a_matrix_per_group_with_marks_and_rtt_and_not_run_cells() -> None:
    page = render_results_html(results_of(
        record("a x b (tcp, noise, yamux)"), record("b x a (tcp, noise, yamux)", Status.FAIL),
        record("a x a (quic)", Status.FLAKY), record("a x b (quic) [cone x symmetric]")))
    groups = re.findall(r'<section class="matrix" data-group="([^"]*)"', page)
    assert groups == ["quic", "quic · cone x symmetric", "tcp, noise, yamux"]
    cells = re.findall(r'<td class="cell o-([a-z-]+)"', page)
    assert cells == ["flaky",                                   # quic: a
                     "not-run", "pass", "not-run", "not-run",   # quic, nat pair: a, b
                     "not-run", "pass", "fail", "not-run"]      # tcp: a, b
    assert f"{report.PASS} <span class=rtt>201 ms</span>" in page
    assert f"{report.FLAKY} <span class=rtt>201 ms</span>" in page


def test_group_is_what_the_name_brackets_hold() -> None:
    assert group_of(record("a x b (tcp, noise, yamux)")) == "tcp, noise, yamux"
    assert group_of(record("a x b (tcp) [home x cgnat]")) == "tcp · home x cgnat"


def test_overlapping_tests_on_a_host_take_lanes() -> None:
    layout = lay_out_timeline(results_of(
        record("a x b (tcp)", start="2026-12-01T10:00:01.000Z", end="2026-12-01T10:00:11.500Z"),
        record("b x a (tcp)", start="2026-12-01T10:00:05Z", end="2026-12-01T10:00:15Z"),
        record("a x a (tcp)", start="2026-12-01T10:00:12Z", end="2026-12-01T10:00:20Z"),
        record("b x b (tcp)", host="h2", start="2026-12-01T10:00:02Z",
               end="2026-12-01T10:00:03Z"),
        record("c x c (tcp)", start=None, end=None),
        record("c x d (tcp)", start="not a time", end="2026-12-01T10:00:03Z")))
    assert layout.span == 60.0  # the pass's own start and end bound it
    assert [(bar.index, bar.lane, bar.start) for bar in layout.hosts["h1"]] == [
        (0, 0, 1.0), (1, 1, 5.0), (2, 0, 12.0)]
    assert [bar.index for bar in layout.hosts["h2"]] == [3]
    assert layout.untimed == [4, 5]


def test_old_results_without_times_still_render() -> None:
    results = load_model(Results, GOLDEN / "results.yaml")
    page = render_results_html(results)
    assert "7 tests have no start and finish times" in page
    assert page.count('class="bar ') == 0 and page.count('<tr class="test"') == 7


def test_ticks_are_round_and_few() -> None:
    assert ticks(60) == [0, 10, 20, 30, 40, 50, 60]
    assert len(ticks(3 * 3600)) <= 11


def test_report_writes_both_and_reads_the_logs_beside(tmp_path: Path, run_cli) -> None:
    one = record("a x b (tcp)", Status.FAIL, reason="timeout", log_file="logs/a_x_b_tcp.log")
    escape = record("b x a (tcp)", Status.FAIL, log_file="../secret.log")
    (tmp_path / "secret.log").write_text("do not show\n")
    folder = tmp_path / "pass"
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "a_x_b_tcp.log").write_text("".join(f"line {n}\n" for n in range(100)))
    (folder / "results.yaml").write_text(dump_yaml(to_yaml_data(results_of(one, escape))))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Repo\n{DASHBOARD_START}\n{DASHBOARD_END}\n")
    code, _, _ = run_cli("report", str(folder / "results.yaml"), "--html",
                         str(tmp_path / "site" / "index.html"), "--update-readme", str(readme))
    assert code == EXIT_OK and (folder / "results.md").is_file()
    page = (tmp_path / "site" / "index.html").read_text()
    assert "line 99" in page and "line 59" not in page  # the log's tail
    assert 'href="../pass/logs/a_x_b_tcp.log"' in page
    assert "do not show" not in page and "secret.log\"" not in page
    assert "[results.html](site/index.html)" in readme.read_text()


def test_report_puts_the_page_beside_the_markdown(tmp_path: Path, run_cli) -> None:
    source = tmp_path / "results.yaml"
    source.write_text((GOLDEN / "results.yaml").read_text())
    assert run_cli("report", str(source), "-o", str(tmp_path / "md" / "r.md"))[0] == EXIT_OK
    assert "go-v0.43 x rust-v0.53 (tcp)" in (tmp_path / "md" / "results.html").read_text()


def test_finish_writes_the_page_and_bundles_it(tmp_path: Path) -> None:
    from tests.controller.test_finish import case, payload, spec_for
    tests = [case("a", "b")]
    summary = finish_pass_of(tmp_path, tests, payload, spec_for)
    page = (tmp_path / "out" / "results.html").read_text()
    assert 'href="logs/a_x_b_tcp.log"' in page and "docker-compose/" not in page
    assert "log of a x b (tcp) on h1" in page
    with zipfile.ZipFile(summary.test_pass_zip) as archive:
        bundled = archive.read("hole-punch-full-101010-25-11-2026/results.html").decode()
    assert 'href="docker-compose/' in bundled  # the zip holds the compose files too


def finish_pass_of(tmp_path, tests, payload, spec_for):
    from controller.results.finish import finish_pass
    return finish_pass(spec_for(tmp_path, tests), [payload(tests[0], Status.PASS)])


@pytest.mark.parametrize("outcome", sorted(LOOKS))
def test_each_look_has_css(outcome: str) -> None:
    page = render_results_html(results_of(record("a x b (tcp)")))
    assert f".o-{outcome}," in page and f".bar.o-{outcome}{{" in page


def test_a_cell_says_what_happened_on_hover() -> None:
    failed = record("a x b (tcp)", Status.FAIL, reason="timeout", host="worker-b", duration="120.4s")
    page = render_results_html(results_of(failed))
    assert 'title="a x b (tcp) · Fail · on worker-b · in 120.4s · timeout"' in page


# ---------------------------------------------------------------- a pass of several NAT pairs


def nat_record(dialer: str, listener: str, variant: str, dialer_nat: str, listener_nat: str,
               status: Status, *, rtt: float | None = None, captures: tuple[str, ...] = (),
               **extra) -> TestRecord:
    """A validated record of a NAT pair, named and filed as the worker names it, with theory's
    verdict from its pair (none on the default pair: test-matrix.yaml leaves it out there)."""
    name = name_of_test(dialer, listener, variant, dialer_nat, listener_nat)
    theory = theory_of(dialer_nat, listener_nat, Transport(variant.split(",")[0]))
    default = (dialer_nat, listener_nat) == (DEFAULT, DEFAULT)
    return TestRecord(name=name, status=status, rtt_ms=rtt, dialer=PeerRecord(version=dialer),
                      listener=PeerRecord(version=listener), transport=variant, host="h1",
                      log_file=log_file_name(name), dialer_nat=dialer_nat,
                      listener_nat=listener_nat, theory=None if default else theory,
                      expected_failure=theory is Theory.IMPOSSIBLE,
                      captures=[capture_file_name(name, source) for source in captures] or None,
                      **extra)


DEFAULT, CONE, SYM = "port-restricted-cone", "full-cone", "symmetric"


def nat_pass_records() -> list[TestRecord]:
    """Two implementations over tcp and quic, three NAT pairs: a cell of each NAT kind, a worse
    one (a one-way pair that failed, with its failed step and evidence) and a better one (a
    symmetric pair that punched, with its timings and evidence)."""
    go, rust = "go-v0.51", "rust-v0.57"
    return [
        nat_record(go, rust, "tcp", DEFAULT, DEFAULT, Status.PASS, rtt=201.0,
                   time_to_direct_ms=1210.0, rtt_samples_ms=[200.6, 201.0, 201.9]),
        nat_record(go, rust, "tcp", CONE, SYM, Status.FAIL, reason="timeout",
                   failed_step="dcutr-started", captures=("dialer_router", "listener_router",
                                                          "dialer")),
        nat_record(go, rust, "tcp", SYM, SYM, Status.PASS, rtt=203.0, time_to_direct_ms=1432.5,
                   rtt_samples_ms=[202.1, 203.0, 204.4], captures=("dialer_router", "dialer")),
        nat_record(rust, go, "tcp", SYM, SYM, Status.FAIL, reason="timeout",
                   failed_step="direct-connection"),
        nat_record(rust, go, "tcp", DEFAULT, DEFAULT, Status.FLAKY, rtt=202.0, attempts=2),
        nat_record(go, rust, "quic", DEFAULT, DEFAULT, Status.PASS, rtt=201.0),
        nat_record(go, rust, "quic", CONE, SYM, Status.PASS, rtt=204.0),
        nat_record(go, rust, "quic", SYM, SYM, Status.ERROR, reason="engine gone"),
    ]


def nat_cells(page: str) -> dict[str, tuple[str, str, str]]:
    """Each NAT grid cell with a test: test index -> (its kind, its mark, theory's word)."""
    found = re.findall(r'<td class="natcell n-([a-z-]+)" data-test="(\d+)"[^>]*><a href="#test-\2">'
                       r'([^<]*)<small class="theory">theory: ([^<]*)</small></a></td>', page)
    return {index: (kind, text, theory) for kind, index, text, theory in found}


def test_a_nat_pass_has_a_grid_per_transport_and_implementation_pair_set_against_theory() -> None:
    records = nat_pass_records()
    page = render_results_html(results_of(*records))
    view = page[page.index('<section id="nat">'):page.index('<section id="timeline">')]
    assert re.findall(r"<h3>Transport: ([^<]*)</h3>", view) == ["quic", "tcp"]
    assert re.findall(r'<section class="natgrid"><h4>([^<]*)</h4>', view) == [
        "go-v0.51 x rust-v0.57", "go-v0.51 x rust-v0.57", "rust-v0.57 x go-v0.51"]
    assert nat_cells(view) == {
        "5": ("pass", "🟢 201ms", "possible"), "6": ("pass", "🟢 204ms", "one-way"),
        "7": ("error", "⚫", "impossible"), "0": ("pass", "🟢 201ms", "possible"),
        "1": ("worse", "🔴 (one-way)", "one-way"), "2": ("better", "❗ 203ms", "impossible"),
        "3": ("as-theory", "⛔", "impossible"), "4": ("flaky", "🟡 202ms", "possible")}
    # results.md's marks, cell for cell
    assert all(nat_cell(records[int(i)]) == mark for i, (_, mark, _) in nat_cells(view).items())
    assert '<a href="#test-1">🔴 (one-way)<small class="theory">theory: one-way</small>' in view
    assert '<small class="theory">theory: impossible</small>' in view
    assert "<b>1</b> 🔴 Worse than theory" in view and "<b>1</b> ❗ Better than theory" in view
    assert 'title="go-v0.51 x rust-v0.57 (tcp) [symmetric x symmetric] · Unexpected pass' in view
    # the list of tests says how each stands against theory
    tests = page[page.index('<section id="tests">'):]
    assert "<th>Against theory</th>" in tests
    assert re.findall(r'<td class="n-([a-z-]+)">', tests) == [
        "pass", "worse", "better", "as-theory", "flaky", "pass", "pass", "error"]
    # a pair not run in a grid is a not-run cell, not a hole
    # a pair a grid did not run is a not-run cell: 3 rows x 2 columns for three pairs (twice),
    # 2 x 2 for two
    assert view.count('class="natcell n-not-run"') == 3 + 3 + 2
    colours = {key: look.cell for key, look in NAT_LOOKS.items()}
    assert f".n-worse{{background-color:{colours['worse']}}}" in page
    assert f".n-better{{background-color:{colours['better']}}}" in page
    others = [c for key, c in colours.items() if key not in ("worse", "better")]
    assert colours["worse"] not in others and colours["better"] not in others


def test_a_default_pass_has_no_nat_view_nor_nat_facts_nor_nat_filter() -> None:
    page = render_results_html(results_of(*nat_pass_records()[:1]))
    assert 'id="nat"' not in page and "natcell" not in page.split("<style>")[1].split(
        "</style>")[1]
    assert "<dt>NAT pair</dt>" not in page and 'id="f-nat"' not in page
    assert "Against theory" not in page


def test_the_matrices_are_per_transport_and_nat_pair_and_the_filter_covers_the_pair() -> None:
    page = render_results_html(results_of(*nat_pass_records()))
    assert re.findall(r'<section class="matrix" data-group="([^"]*)"', page) == [
        "quic · full-cone x symmetric", "quic · port-restricted-cone x port-restricted-cone",
        "quic · symmetric x symmetric", "tcp · full-cone x symmetric",
        "tcp · port-restricted-cone x port-restricted-cone", "tcp · symmetric x symmetric"]
    options = re.search(r'<select id="f-nat" name="nat">(.*?)</select>', page)[1]
    assert re.findall(r'<option value="([^"]*)"', options) == [
        "", "full-cone x symmetric", "port-restricted-cone x port-restricted-cone",
        "symmetric x symmetric"]
    # every element the script filters carries its pair
    assert page.count("data-outcome=") == page.count("data-nat=")
    assert 'data-test="1" data-outcome="fail" data-dialer="go-v0.51" data-listener="rust-v0.57" ' \
           'data-transport="tcp" data-nat="full-cone x symmetric"' in page


def detail(page: str, index: int) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """A test's details: its facts by name, and its links as (href, label)."""
    article = re.search(rf'<article class="detail" id="detail-{index}" hidden>(.*?)</article>',
                        page)[1]
    return (dict(re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", article)),
            re.findall(r'<a href="([^"]*)">([^<]*)</a>', article))


def test_the_details_show_nat_pair_theory_relay_timings_step_and_evidence() -> None:
    records = nat_pass_records()
    page = render_results_html(results_of(*records), root="../pass")
    (worse, links), (better, _) = detail(page, 1), detail(page, 2)
    assert worse["NAT pair"] == "full-cone (dialer) x symmetric (listener)"
    assert worse["Theory"] == "one-way; 🔴 worse than theory: an implementation or interop bug"
    assert worse["Relay"] == "rust"
    assert worse["Stopped at"] == "dcutr-started: DCUtR sync"
    stem = "go-v0.51_x_rust-v0.57_tcp_full-cone_x_symmetric"
    for path, label in ((f"captures/{stem}.dialer_router.pcap", "capture dialer_router"),
                        (f"captures/{stem}.listener_router.pcap", "capture listener_router"),
                        (f"captures/{stem}.dialer.keys", "key log dialer"),
                        (f"logs/{stem}.log", "log")):
        assert (f"../pass/{path}", label) in links
    assert better["Theory"].startswith("impossible; ❗ better than theory: a harness bug")
    assert better["Time to direct connection"] == "1432 ms"
    assert better["RTT (median)"] == "203 ms"
    assert better["RTT samples"] == "202.1, 203.0, 204.4 ms (the RTT is their median)"
    assert detail(page, 3)[0]["Theory"] == "impossible; the result is as theory says"
    assert detail(page, 7)[0]["Theory"] == "impossible"  # an error has no verdict
