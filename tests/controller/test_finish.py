"""Finishing a pass: one record per test, partial when one is missing, the zip's layout."""

import zipfile
from pathlib import Path

import yaml

from cluster.matrix import build_matrix, matrix_to_yaml
from cluster.models import (
    ImageInfo,
    PeerRecord,
    Settings,
    Status,
    TestCase,
    TestRecord,
    Transport,
    to_yaml_data,
)
from cluster.selection import Selection
from controller.archive.testpass import pass_name
from controller.results.finish import PassSpec, finish_pass


def case(dialer: str, listener: str) -> TestCase:
    return TestCase(name=f"{dialer} x {listener} (tcp)", dialer=dialer, listener=listener,
                    transport=Transport.TCP)


def payload(test: TestCase, status: Status, host: str = "h1") -> dict:
    record = TestRecord(name=test.name, status=status, rtt_ms=201.0 if status is Status.PASS else None,
                        reason=None if status is Status.PASS else "timeout",
                        dialer=PeerRecord(version=test.dialer), listener=PeerRecord(version=test.listener),
                        docker_compose=f"docker-compose/{'a' * 64}.yaml",
                        log_file=f"logs/{test.dialer}_x_{test.listener}_tcp.log", transport="tcp", host=host)
    return {"record": to_yaml_data(record), "log": f"log of {test.name} on {host}\n",
            "compose": "services: {}\n"}


def spec_for(tmp_path: Path, tests: list[TestCase]) -> PassSpec:
    cache = tmp_path / "cache"
    (cache / "snapshots").mkdir(parents=True)
    (cache / "snapshots" / f"{'b' * 64}.zip").write_bytes(b"PK fake snapshot")
    base = tmp_path / "base"
    base.mkdir()
    (base / "Makefile").write_text("all:\n")
    image = ImageInfo(image_id="c" * 64, image_name="x", built_at="2026-11-25T09:00:00Z",
                      arch="x86_64", snapshot=f"snapshots/{'b' * 64}.zip")
    return PassSpec(name="hole-punch-full-101010-25-11-2026", kind="full", base_dir=str(base),
                    output_dir=str(tmp_path / "out"), cache_dir=str(cache),
                    started_at="2026-11-25T10:10:10Z",
                    matrix_yaml=matrix_to_yaml(build_matrix(tests, Selection(), "full")),
                    settings=Settings.model_validate({"testPass": {"name": "p", "kind": "full"},
                                                      "execution": {"cacheDir": str(cache)}}),
                    images={"a": image})


def test_one_record_per_test_and_partial_when_missing(tmp_path: Path) -> None:
    tests = [case("a", "a"), case("a", "b"), case("b", "a")]
    spec = spec_for(tmp_path, tests)
    summary = finish_pass(spec, [payload(tests[0], Status.PASS), payload(tests[0], Status.FAIL, "h2"),
                                 payload(tests[1], Status.FAIL), None])
    results = yaml.safe_load((tmp_path / "out" / "results.yaml").read_text())
    assert [t["name"] for t in results["tests"]] == ["a x a (tcp)", "a x b (tcp)"]
    assert results["tests"][0]["host"] == "h1"  # the first record wins; the duplicate is dropped
    assert results["metadata"]["partial"] is True
    assert results["metadata"]["missingTests"] == ["b x a (tcp)"]
    assert results["summary"] == {"total": 3, "passed": 1, "failed": 1, "ignored": 0, "flaky": 0,
                                  "knownFailures": 0, "unexpectedPasses": 0, "errors": 0}
    assert summary.exit_code == 1 and summary.partial is True
    assert "Partial pass" in (tmp_path / "out" / "results.md").read_text()
    assert "1 duplicate results" in (tmp_path / "out" / "output.log").read_text()


def test_complete_pass_exits_zero_and_zip_has_the_seed_layout(tmp_path: Path) -> None:
    tests = [case("a", "a")]
    spec = spec_for(tmp_path, tests)
    summary = finish_pass(spec, [payload(tests[0], Status.PASS)])
    assert summary.exit_code == 0 and not summary.partial
    zip_path = Path(summary.test_pass_zip)
    assert zip_path.name == "hole-punch-full-101010-25-11-2026.zip"
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        top = "hole-punch-full-101010-25-11-2026/"
        for required in ("report.yaml", "results.md", "results.html", "test-matrix.yaml",
                         "output.log", "settings.yaml", "re-run.sh", "images.yaml",
                         "logs/a_x_a_tcp.log", f"docker-compose/{'a' * 64}.yaml", f"snapshots/{'b' * 64}.zip",
                         "base/Makefile"):
            assert top + required in names, required
        assert archive.getinfo(top + f"snapshots/{'b' * 64}.zip").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo(top + "re-run.sh").external_attr >> 16 & 0o111


def test_pass_name_is_the_seeds() -> None:
    from datetime import datetime
    assert pass_name("rust", datetime(2025, 11, 8, 14, 30, 22)) == "hole-punch-rust-143022-08-11-2025"


def test_snapshot_keeps_nested_build_folders_and_symlinks(tmp_path: Path) -> None:
    import os

    from controller.images.snapshots import extract_zip, write_zip
    src = tmp_path / "src"
    (src / "vendor" / "thiserror" / "build").mkdir(parents=True)
    (src / "vendor" / "thiserror" / "build" / "probe.rs").write_text("fn main() {}\n")
    (src / "build").mkdir()
    (src / "build" / "binary").write_text("output")
    (src / "image.yaml").write_text("generated")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    os.symlink("run.sh", src / "link")
    write_zip(src, tmp_path / "s.zip")
    extract_zip(tmp_path / "s.zip", tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "vendor/thiserror/build/probe.rs").is_file()
    assert not (out / "build").exists() and not (out / "image.yaml").exists()
    assert os.readlink(out / "link") == "run.sh" and os.access(out / "run.sh", os.X_OK)


def test_the_summary_counts_the_bundled_wheelhouse(tmp_path: Path) -> None:
    """Without the cache's wheelhouse a re-run cannot install offline: submit warns on 0."""
    tests = [case("a", "a")]
    spec = spec_for(tmp_path, tests)
    assert finish_pass(spec, [payload(tests[0], Status.PASS)]).wheelhouse == 0
    wheels = Path(spec.cache_dir) / "wheels"
    wheels.mkdir()
    (wheels / "celery-5.7.0-py3-none-any.whl").write_bytes(b"PK fake wheel")
    assert finish_pass(spec, [payload(tests[0], Status.PASS)]).wheelhouse == 1


def test_an_error_on_a_known_failure_makes_the_pass_exit_3_and_is_named(tmp_path: Path) -> None:
    tests = [case("a", "a"), case("a", "b").model_copy(update={"expected_failure": True})]
    spec = spec_for(tmp_path, tests)
    error = payload(tests[1], Status.ERROR)
    error["record"]["reason"] = "infrastructure: image fetch failed"
    summary = finish_pass(spec, [payload(tests[0], Status.PASS), error])
    results = yaml.safe_load((tmp_path / "out" / "results.yaml").read_text())
    assert results["tests"][1]["status"] == "error" and results["tests"][1]["expectedFailure"]
    assert results["summary"]["errors"] == 1 and results["summary"]["knownFailures"] == 0
    assert summary.exit_code == 3 and (summary.errors, summary.known_failures) == (1, 0)
    assert [(n.name, n.reason) for n in summary.error_tests] == [
        ("a x b (tcp)", "infrastructure: image fetch failed")]
    assert "a x b (tcp): error (infrastructure: image fetch failed)" in \
        (tmp_path / "out" / "output.log").read_text()


def test_the_terminal_names_the_errors_last(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from controller.run.progress import report_summary
    tests = [case("a", "a"), case("a", "b")]
    spec = spec_for(tmp_path, tests)
    summary = finish_pass(spec, [payload(tests[0], Status.PASS), payload(tests[1], Status.ERROR)])
    text = io.StringIO()
    report_summary(summary, Console(file=text, width=200, markup=False, highlight=False))
    lines = text.getvalue().rstrip("\n").splitlines()
    assert "1 errors" in next(line for line in lines if line.startswith("complete:"))
    assert lines[-2].startswith("1 tests ended on an infrastructure fault")
    assert lines[-1].split()[:4] == ["ERROR", "a", "x", "b"] and lines[-1].endswith("timeout [h1]")


def test_the_terminal_counts_known_failures_that_passed(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from controller.run.progress import report_summary
    tests = [case("a", "a"), case("a", "b").model_copy(update={"expected_failure": True})]
    spec = spec_for(tmp_path, tests)
    summary = finish_pass(spec, [payload(tests[0], Status.PASS), payload(tests[1], Status.PASS)])
    assert summary.unexpected_passes == 1
    text = io.StringIO()
    report_summary(summary, Console(file=text, width=200, markup=False, highlight=False))
    line = next(line for line in text.getvalue().splitlines() if line.startswith("complete:"))
    assert "1 unexpected passes" in line and "2 passed" in line


def test_a_github_snapshots_vendored_crates_travel_in_the_zip(tmp_path: Path) -> None:
    """An offline-built github source: its vendored crates' pack, beside GitHub's zip of the
    commit in the cache (impl/rust/upstream.mk), is stored in the zip as it is."""
    tests = [case("a", "a")]
    spec = spec_for(tmp_path, tests)
    commit = "6348a0be4aeb5b48eecf17a5d0aae15ff8239984"
    snapshots = tmp_path / "cache" / "snapshots"
    with zipfile.ZipFile(snapshots / f"{commit}.zip", "w") as github_zip:  # GitHub's layout
        github_zip.writestr(f"rust-libp2p-{commit}/Cargo.toml", "[workspace]\n")
    crates = b"(\xb5/\xfd fake vendored crates pack"  # crafted: only its bytes travel
    (snapshots / f"{commit}.vendor.tar.zst").write_bytes(crates)
    spec.images["rust-upstream-head"] = ImageInfo(
        image_id="d" * 64, image_name="holepunch-rust-upstream-head",
        built_at="2026-12-03T13:00:00Z", arch="x86_64", snapshot=f"snapshots/{commit}.zip")
    summary = finish_pass(spec, [payload(tests[0], Status.PASS)])
    top = "hole-punch-full-101010-25-11-2026/"
    with zipfile.ZipFile(summary.test_pass_zip) as archive:
        info = archive.getinfo(f"{top}snapshots/{commit}.vendor.tar.zst")
        assert info.compress_type == zipfile.ZIP_STORED
        assert archive.read(info) == crates
        assert f"{top}snapshots/{commit}.zip" in archive.namelist()
        # the other image's snapshot has no pack beside it, and none is made up for it
        assert f"{top}snapshots/{'b' * 64}.vendor.tar.zst" not in archive.namelist()
