"""results.html in a real browser (Debian's headless Chromium), from a results.yaml of fake
records (no Docker): the script runs, the matrix and the timeline are there with the right
counts and classes, a click on a cell opens its details, a filter dims the rest; a screenshot
is saved under .test-output/<test>/.

The DOM is read with --dump-dom after the page's script ran. A click needs a driver: a small
harness page of ours loads results.html in an iframe (file:// pages may reach each other with
--allow-file-access-from-files), clicks a cell and writes what it saw into its own DOM.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cluster.models import PeerRecord, Results, ResultsMetadata, Status, TestRecord, to_yaml_data
from cluster.yamlio import dump_yaml
from controller.results.html import outcome_of
from controller.results.report import summarize

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
IMPLS = ("go-v0.51", "python-v0.8", "rust-v0.57")
HOSTILE = '<script>document.title="owned"</script>'
T0 = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000")


def _stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def fake_records() -> list[TestRecord]:
    """Fake records of a two-host pass: every outcome, overlapping tests, one hostile reason,
    one record from an older worker (no times) and one pair not run."""
    records = []
    clocks = {"worker-a": [0.0, 0.5], "worker-b": [0.2, 0.9]}  # two tests at once per host
    for variant in ("tcp, noise, yamux", "quic"):
        for dialer in IMPLS:
            for listener in IMPLS:
                if variant == "quic" and (dialer, listener) == ("python-v0.8", "go-v0.51"):
                    continue  # not run
                n = len(records)
                host = ("worker-a", "worker-b")[n % 2]
                lane = n // 2 % 2
                seconds = 6.0 + 5 * (n % 3) + (28.0 if "python" in dialer and variant == "quic" else 0)
                start = clocks[host][lane]
                clocks[host][lane] = start + seconds + 0.3
                status = Status.FAIL if "python" in dialer and variant == "quic" else Status.PASS
                status = Status.FLAKY if n == 4 else status
                expected = dialer == "go-v0.51" and listener == "python-v0.8"
                status = Status.FAIL if expected and variant == "quic" else status
                reason = "timeout" if status is Status.FAIL else None
                if n == 7:
                    reason = f"dialer said {HOSTILE}"
                records.append(TestRecord(
                    name=f"{dialer} x {listener} ({variant})", status=status,
                    exit_code=0 if status is not Status.FAIL else 1,
                    rtt_ms=200.0 + n if status is not Status.FAIL else None,
                    duration=f"{seconds:.1f}s", host=host, reason=reason,
                    attempts=2 if status is Status.FLAKY else 1, expected_failure=expected,
                    dialer=PeerRecord(version=dialer), listener=PeerRecord(version=listener),
                    transport=variant, log_file=f"logs/fake-{n}.log",
                    docker_compose=f"docker-compose/{n:064x}.yaml",
                    started_at=None if n == 10 else _stamp(start),
                    finished_at=None if n == 10 else _stamp(start + seconds)))
    return records


def write_fake_pass(folder: Path) -> Results:
    records = fake_records()
    end = max(T0 + timedelta(seconds=60), *(datetime.fromisoformat(
        r.finished_at.replace("Z", "+00:00")) for r in records if r.finished_at))
    meta = ResultsMetadata(test_pass="hole-punch-full-080000-03-12-2026", kind="full",
                           started_at="2026-12-03T08:00:00Z",
                           completed_at=end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           duration=f"{(end - T0).total_seconds():.0f}s", worker_count=2)
    results = Results(metadata=meta, summary=summarize(records, total=len(records) + 1),
                      tests=records)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    for n, record in enumerate(records):
        lines = [f"dialer_1 | fake log line {i} of {record.name}" for i in range(60)]
        (folder / record.log_file).write_text("\n".join(lines) + f"\n[holepunch] end {n}\n")
    (folder / "results.yaml").write_text(dump_yaml(to_yaml_data(results)))
    return results


class _Elements(HTMLParser):
    """Every element's tag and attributes, and the text of elements with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        attributes = {key: value or "" for key, value in attrs}
        self.found.append((tag, attributes))
        if tag not in ("meta", "br", "img", "input", "link"):
            self._open.append(attributes.get("id"))

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for element_id in self._open:
            if element_id:
                self.text[element_id] = self.text.get(element_id, "") + data

    def having(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.found if t == tag and cls in a.get("class", "").split()]


def parse(dom: str) -> _Elements:
    parser = _Elements()
    parser.feed(dom)
    return parser


@pytest.fixture
def browser(tmp_path: Path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium (apt-get install chromium)")
    profiles = iter(range(1000))

    def run(url: str, *extra: str) -> subprocess.CompletedProcess:
        profile = tmp_path / f"profile-{next(profiles)}"  # fresh each run: no state carried
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=120)
    return run


@pytest.fixture
def out_dir(request) -> Path:
    path = REPO / ".test-output" / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def page_problems(dom: str, results: Results, open_index: int) -> list[str]:
    """What is wrong with the rendered page (empty: nothing)."""
    page, problems = parse(dom), []
    if 'data-ready="yes"' not in dom:
        problems.append("the script did not finish (body has no data-ready)")
    records = results.tests
    cells = page.having("td", "cell")
    want = Counter(outcome_of(r) for r in records)
    groups = {}
    for record in records:
        groups.setdefault(record.transport, set()).update((record.dialer.version, record.listener.version))
    want["not-run"] = sum(len(impls) ** 2 for impls in groups.values()) - len(records)
    got = Counter(next(c[2:] for c in a["class"].split() if c.startswith("o-")) for a in cells)
    if got != want:
        problems.append(f"matrix cells by outcome: {dict(got)}, expected {dict(want)}")
    if len(page.having("section", "matrix")) != len(groups):
        problems.append("not one matrix per transport")
    for host in ("worker-a", "worker-b"):
        bars = [a for a in page.having("a", "bar")
                if records[int(a["data-test"])].host == host]
        timed = [r for r in records if r.host == host and r.started_at]
        if len(bars) != len(timed):
            problems.append(f"{host}: {len(bars)} bars for {len(timed)} timed tests")
        if any(f"o-{a['data-outcome']}" not in a["class"].split() for a in bars):
            problems.append(f"{host}: a bar is not coloured by its outcome")
    if [a.get("data-host") for t, a in page.found if "trow" in a.get("class", "").split()
            and "data-host" in a] != ["worker-a", "worker-b"]:
        problems.append("not one timeline row per host")
    shown = [a["id"] for t, a in page.found if t == "article" and "hidden" not in a]
    if shown != [f"detail-{open_index}"]:
        problems.append(f"details shown: {shown}, expected detail-{open_index}")
    if [t for t, a in page.found if t == "aside" and "hidden" in a]:
        problems.append("the details panel is hidden")
    marked = [t for t, a in page.found if "selected" in a.get("class", "").split()]
    if sorted(marked) != sorted(["td", "tr"] + (["a"] if records[open_index].started_at else [])):
        problems.append(f"the open test is marked on {marked}, not on its cell, bar and row")
    return problems


def test_the_page_renders_in_chromium(tmp_path: Path, run_cli, browser, out_dir) -> None:
    folder = out_dir / "pass"
    results = write_fake_pass(folder)
    assert run_cli("report", str(folder / "results.yaml"))[0] == 0
    page = folder / "results.html"
    hostile = next(n for n, r in enumerate(results.tests) if HOSTILE in (r.reason or ""))

    opened = browser(f"{page.as_uri()}#test-{hostile}", "--dump-dom")
    (out_dir / "dom.html").write_text(opened.stdout)
    assert opened.returncode == 0, opened.stderr[-2000:]
    assert "Uncaught" not in opened.stderr, opened.stderr[-2000:]
    assert page_problems(opened.stdout, results, hostile) == []
    # The hostile reason is text: still escaped in the live DOM, and it never ran.
    assert opened.stdout.count("<script") == 1 and "&lt;script&gt;document.title" in opened.stdout
    assert re.search(r"<title>([^<]*)</title>", opened.stdout)[1].startswith("Hole punch results")
    assert "[holepunch] end 7" in opened.stdout and "fake log line 19 " not in opened.stdout

    shot = out_dir / "results.png"
    browser(f"{page.as_uri()}#test-{hostile}", f"--screenshot={shot}", "--window-size=1500,1250")
    assert shot.stat().st_size > 20_000


HARNESS = """<!DOCTYPE html><html><body><pre id="report">pending</pre>
<iframe id="page" src="results.html" style="width:1200px;height:800px"></iframe><script>
document.getElementById("page").addEventListener("load", function () {
  var doc = this.contentDocument, out = {};
  var report = document.getElementById("report");
  try {
    var cell = doc.querySelector("td.cell.o-fail a");
    out.clicked = cell.getAttribute("href");
    cell.click();
    setTimeout(function () {
      out.details = Array.prototype.map.call(doc.querySelectorAll(".detail:not([hidden])"),
                                             function (d) { return d.id; });
      out.panelHidden = doc.getElementById("details").hidden;
      var pick = doc.getElementById("f-impl");
      pick.value = "rust-v0.57";
      pick.dispatchEvent(new Event("change"));
      out.shown = doc.getElementById("shown").textContent;
      out.offCells = doc.querySelectorAll("td.cell.off").length;
      out.offBars = doc.querySelectorAll("a.bar.off").length;
      doc.dispatchEvent(new KeyboardEvent("keydown", {key: "Escape"}));
      setTimeout(function () {
        out.closed = doc.getElementById("details").hidden;
        report.textContent = JSON.stringify(out);
      }, 100);
    }, 100);
  } catch (e) { report.textContent = "error: " + e; }
});
</script></body></html>
"""


def clicked(browser, folder: Path) -> dict | str:
    harness = folder / "harness.html"
    harness.write_text(HARNESS)
    dom = browser(harness.as_uri(), "--allow-file-access-from-files", "--dump-dom").stdout
    text = parse(dom).text.get("report", "")
    return json.loads(text) if text.startswith("{") else text


def test_a_click_opens_details_and_a_filter_dims_the_rest(tmp_path: Path, run_cli,
                                                          browser) -> None:
    results = write_fake_pass(tmp_path)
    assert run_cli("report", str(tmp_path / "results.yaml"))[0] == 0
    seen = clicked(browser, tmp_path)
    assert isinstance(seen, dict), seen
    index = int(seen["clicked"].removeprefix("#test-"))
    assert results.tests[index].status is Status.FAIL
    assert seen["details"] == [f"detail-{index}"] and seen["panelHidden"] is False
    rust = [r for r in results.tests if "rust-v0.57" in (r.dialer.version, r.listener.version)]
    assert seen["shown"] == f"{len(rust)} of {len(results.tests)} tests"
    assert seen["offBars"] == sum(1 for r in results.tests if r.started_at and r not in rust)
    assert seen["offCells"] > 0 and seen["closed"] is True
    filtered = parse(browser(f"{(tmp_path / 'results.html').as_uri()}?status=fail",
                             "--dump-dom").stdout)
    failed = [r for r in results.tests if outcome_of(r) == "fail"]
    assert filtered.text["shown"] == f"{len(failed)} of {len(results.tests)} tests"


def test_the_checks_fail_when_the_script_throws(tmp_path: Path, run_cli, browser) -> None:
    """The checks above can fail: the same page with its script broken does not pass them."""
    results = write_fake_pass(tmp_path)
    assert run_cli("report", str(tmp_path / "results.yaml"))[0] == 0
    page = tmp_path / "results.html"
    text = page.read_text()
    page.write_text(text.replace('"use strict";', '"use strict"; throw new Error("broken");', 1))
    opened = browser(f"{page.as_uri()}#test-3", "--dump-dom")
    assert "Uncaught Error: broken" in opened.stderr
    problems = page_problems(opened.stdout, results, 3)
    assert any("data-ready" in p for p in problems) and any("details" in p for p in problems)
    seen = clicked(browser, tmp_path)
    assert not isinstance(seen, dict) or seen["details"] == []
    assert re.search(r'<td class="cell', opened.stdout)  # the tables are there without the script


# ---------------------------------------------------------------- a pass of several NAT pairs


def write_nat_pass(folder: Path) -> Results:
    """The crafted NAT pass of the unit tests, with its logs and captures on disk."""
    from tests.controller.test_results_html import nat_pass_records
    records = nat_pass_records()
    results = Results(metadata=ResultsMetadata(test_pass="hole-punch-full-090000-07-12-2026",
                                               kind="full"),
                      summary=summarize(records, total=len(records)), tests=records)
    for record in records:
        for relative in (record.log_file, *(record.captures or ())):
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(f"fake {relative}\n")
    (folder / "results.yaml").write_text(dump_yaml(to_yaml_data(results)))
    return results


NAT_HARNESS = """<!DOCTYPE html><html><body><pre id="report">pending</pre>
<iframe id="page" src="results.html" style="width:1200px;height:800px"></iframe><script>
document.getElementById("page").addEventListener("load", function () {
  var doc = this.contentDocument, out = {};
  var report = document.getElementById("report");
  function open(kind, then) {
    doc.querySelector("td.natcell.n-" + kind + " a").click();  // the first of its kind
    setTimeout(function () {
      var shown = doc.querySelectorAll(".detail:not([hidden])");
      var cell = doc.querySelector("td.natcell.n-" + kind);
      out[kind] = {href: cell.querySelector("a").getAttribute("href"),
                   colour: getComputedStyle(cell).backgroundColor,
                   details: Array.prototype.map.call(shown, function (d) { return d.id; }),
                   text: shown.length ? shown[0].textContent : "",
                   links: shown.length ? Array.prototype.map.call(shown[0].querySelectorAll("a"),
                     function (a) { return a.getAttribute("href"); }) : []};
      then();
    }, 100);
  }
  try {
    open("worse", function () { open("better", function () {
      var pick = doc.getElementById("f-nat");
      pick.value = "symmetric x symmetric";
      pick.dispatchEvent(new Event("change"));
      out.gridsShown = doc.querySelectorAll("section.natgrid:not([hidden])").length;
      out.natCellsOn = doc.querySelectorAll("td.natcell:not(.off)").length;
      out.matricesShown = Array.prototype.map.call(
        doc.querySelectorAll("section.matrix:not([hidden])"), function (m) { return m.dataset.group; });
      report.textContent = JSON.stringify(out);
    }); });
  } catch (e) { report.textContent = "error: " + e; }
});
</script></body></html>
"""


def test_the_nat_view_renders_and_its_cells_open_their_details(tmp_path: Path, run_cli, browser,
                                                               out_dir) -> None:
    folder = out_dir / "pass"
    results = write_nat_pass(folder)
    assert run_cli("report", str(folder / "results.yaml"))[0] == 0
    page = folder / "results.html"

    opened = browser(page.as_uri(), "--dump-dom")
    assert opened.returncode == 0 and "Uncaught" not in opened.stderr, opened.stderr[-2000:]
    assert 'data-ready="yes"' in opened.stdout
    dom = parse(opened.stdout)
    kinds = Counter(next(c[2:] for c in a["class"].split() if c.startswith("n-"))
                    for a in dom.having("td", "natcell") if "data-test" in a)
    assert kinds == {"pass": 3, "worse": 1, "better": 1, "as-theory": 1, "flaky": 1, "error": 1}
    assert len(dom.having("section", "natgrid")) == 3

    (folder / "harness.html").write_text(NAT_HARNESS)
    text = parse(browser((folder / "harness.html").as_uri(), "--allow-file-access-from-files",
                         "--dump-dom").stdout).text.get("report", "")
    assert text.startswith("{"), text
    seen = json.loads(text)
    worse, better = seen["worse"], seen["better"]
    for cell, kind in ((worse, "worse"), (better, "better")):
        index = int(cell["href"].removeprefix("#test-"))
        assert cell["details"] == [f"detail-{index}"], kind
        assert "NAT pair" in cell["text"] and "Theory" in cell["text"]
        captures = [link for link in cell["links"] if link.startswith("captures/")]
        assert captures == results.tests[index].captures
        assert all((folder / link).is_file() for link in cell["links"])
    assert results.tests[int(worse["href"][6:])].status is Status.FAIL
    assert "Stopped atdcutr-started: DCUtR sync" in worse["text"]
    assert "worse than theory" in worse["text"]
    assert "Time to direct connection1432 ms" in better["text"]
    assert "RTT samples202.1, 203.0, 204.4 ms" in better["text"]
    assert "better than theory: a harness bug" in better["text"]
    # red where worse than theory; the harness bug in a colour of its own
    red, green, blue = (int(n) for n in re.findall(r"\d+", worse["colour"])[:3])
    assert red > 200 and green < 160 and blue < 160, worse["colour"]
    assert better["colour"] not in (worse["colour"], "rgba(0, 0, 0, 0)"), better["colour"]
    # the NAT pair filter: the grids all ran the pair, each shows just that cell; one matrix
    # per transport is left
    assert seen["gridsShown"] == 3 and seen["natCellsOn"] == 3
    assert seen["matricesShown"] == ["quic · symmetric x symmetric", "tcp · symmetric x symmetric"]

    shot = out_dir / "results-nat.png"
    browser(f"{page.as_uri()}{worse['href']}", f"--screenshot={shot}", "--window-size=1500,2200")
    assert shot.stat().st_size > 20_000
