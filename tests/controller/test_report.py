"""Reports: results.yaml -> results.md (golden files) and the README dashboard."""

from pathlib import Path

import pytest

from cluster.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError
from cluster.models import PeerRecord, Relay, Results, Status, TestRecord
from cluster.yamlio import load_model
from controller.results.report import (
    DASHBOARD_END,
    DASHBOARD_START,
    inject_dashboard,
    render_results_md,
    summarize,
)

GOLDEN = Path(__file__).parent / "golden"


def record(name: str, status: Status, expected: bool = False) -> TestRecord:
    dialer, rest = name.split(" x ")
    return TestRecord(name=name, status=status, expected_failure=expected,
                      dialer=PeerRecord(version=dialer), listener=PeerRecord(version=rest.split()[0]))


def test_results_md_matches_golden() -> None:
    results = load_model(Results, GOLDEN / "results.yaml")
    assert render_results_md(results) == (GOLDEN / "results.md").read_text()


def test_report_command_writes_results_md(tmp_path: Path, run_cli) -> None:
    source = tmp_path / "results.yaml"
    source.write_text((GOLDEN / "results.yaml").read_text())
    code, _, _ = run_cli("report", str(source))
    assert code == EXIT_OK
    assert (tmp_path / "results.md").read_text() == (GOLDEN / "results.md").read_text()


def test_report_of_bad_results_exits_2(tmp_path: Path, run_cli) -> None:
    source = tmp_path / "results.yaml"
    source.write_text("metadata: {}\ntests: []\n")
    code, _, stderr = run_cli("report", str(source))
    assert code == EXIT_BAD_INPUT and "metadata.testPass: required key is missing" in stderr
    assert not (tmp_path / "results.md").exists()


def test_summarize_counts_each_kind_once() -> None:
    summary = summarize([record("a x b (tcp)", Status.PASS), record("a x a (tcp)", Status.FAIL),
                         record("b x b (tcp)", Status.FLAKY),
                         record("c x c (tcp)", Status.FAIL, expected=True),
                         record("c x a (tcp)", Status.PASS, expected=True)], total=6, ignored=1)
    assert (summary.passed, summary.failed, summary.flaky, summary.known_failures,
            summary.unexpected_passes, summary.total, summary.ignored) == (2, 1, 1, 1, 1, 6, 1)


def test_partial_pass_is_labelled() -> None:
    results = load_model(Results, GOLDEN / "results.yaml")
    results.metadata.partial = True
    results.metadata.missing_tests = ["x x y (tcp)"]
    assert "**Partial pass**: 1 of 7 tests have no result" in render_results_md(results)


def test_dashboard_injection_is_idempotent() -> None:
    readme = f"# Title\n\nintro\n\n{DASHBOARD_START}\nold\n{DASHBOARD_END}\n\nfooter\n"
    body = "# Hole Punch Interoperability Test Results\n\n**Test Pass**: x\n"
    once = inject_dashboard(readme, body)
    assert once == f"# Title\n\nintro\n\n{DASHBOARD_START}\n**Test Pass**: x\n{DASHBOARD_END}\n\nfooter\n"
    assert inject_dashboard(once, body) == once


@pytest.mark.parametrize("readme", ["no markers", f"{DASHBOARD_END}\n{DASHBOARD_START}"])
def test_dashboard_needs_markers_in_order(readme: str) -> None:
    with pytest.raises(ConfigError):
        inject_dashboard(readme, "x")


def test_report_updates_readme(tmp_path: Path, run_cli) -> None:
    source = tmp_path / "results.yaml"
    source.write_text((GOLDEN / "results.yaml").read_text())
    readme = tmp_path / "README.md"
    readme.write_text(f"# Repo\n{DASHBOARD_START}\n{DASHBOARD_END}\n")
    assert run_cli("report", str(source), "--update-readme", str(readme))[0] == EXIT_OK
    assert "## Transport: tcp" in readme.read_text()


def test_an_error_is_its_own_cell_count_and_legend_even_for_a_known_failure() -> None:
    from cluster.models import Results, ResultsMetadata
    from controller.results.report import ERROR, cell
    records = [record("a x a (tcp)", Status.PASS), record("a x b (tcp)", Status.ERROR, expected=True),
               record("b x a (tcp)", Status.ERROR)]
    summary = summarize(records, total=3)
    assert (summary.errors, summary.known_failures, summary.failed, summary.passed,
            summary.unexpected_passes) == (2, 0, 0, 1, 0)
    assert cell(records[1]) == ERROR and cell(records[2]) == ERROR
    md = render_results_md(Results(metadata=ResultsMetadata(test_pass="p"), summary=summary,
                                   tests=records))
    assert f"- **Errors**: 2 {ERROR}" in md
    assert f"| **a** | 🟢 | {ERROR} |" in md
    assert f"- {ERROR} **Error** - Could not be run" in md and "Known Failure" not in md


def test_report_turns_an_invalid_record_into_an_error_for_its_test(tmp_path: Path, run_cli) -> None:
    import yaml
    data = yaml.safe_load((GOLDEN / "results.yaml").read_text())
    data["tests"][0]["logFile"] = "../../escape.log"       # rust-v0.53 x go-v0.43 (tcp)
    data["tests"][1]["rttMs"] = "fast"                      # rust-v0.53 x rust-v0.53 (tcp)
    source = tmp_path / "results.yaml"
    source.write_text(yaml.safe_dump(data))
    code, _, _ = run_cli("report", str(source))
    md = (tmp_path / "results.md").read_text()
    assert code == EXIT_OK
    assert "- **Errors**: 2 ⚫" in md, md
    assert "| **rust-v0.53** | ⚫ | ⚫ |" in md and "- **Passed**: 2 ✅" in md
    page = (tmp_path / "results.html").read_text()
    assert "escape.log" not in page and "invalid record in results.yaml: logFile" in page


def test_a_relays_cells_have_tables_of_their_own() -> None:
    """The same pair and transport through two relays: two cells, in two tables; the default
    relay's tables keep their seed names and come first."""
    results = load_model(Results, GOLDEN / "results.yaml")
    rust = TestRecord(name="a x b (quic)", status=Status.PASS, rtt_ms=207.0, transport="quic",
                      dialer=PeerRecord(version="a"), listener=PeerRecord(version="b"))
    go = rust.model_copy(update={"name": "a x b (quic) [relay go]", "relay": Relay.GO,
                                 "status": Status.FAIL, "rtt_ms": None})
    results.tests = [go, rust]
    text = render_results_md(results)
    tables = [line for line in text.splitlines() if line.startswith("## Transport:")]
    assert tables == ["## Transport: quic", "## Transport: quic (relay go)"]
    first, second = text.split("## Transport: quic (relay go)")
    assert "🟢 207ms" in first.split("## Transport: quic")[1] and "🔴" not in first
    assert "🔴" in second.split("## ")[0]
