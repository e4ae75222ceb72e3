"""results.html: escaping of untrusted record strings, the marks table, matrices, the timeline's
layout, and where the page is written (report command, finish, the zip)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from cluster.errors import EXIT_OK
from cluster.models import PeerRecord, Results, ResultsMetadata, Status, TestRecord, to_yaml_data
from cluster.yamlio import dump_yaml, load_model
from controller.results import report
from controller.results.html import (
    LOOKS,
    group_of,
    lay_out_timeline,
    look_of,
    outcome_of,
    render_results_html,
    ticks,
)
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
