"""Hostile configuration through the CLIs: exit 2 naming the file and the key, nothing written;
and no traceback ever: an unexpected exception is one line, a log file and exit 4."""

import os
from pathlib import Path

import pytest

from cluster.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK


def matrix_files(cache: Path) -> list[Path]:
    return sorted((cache / "test-matrix").glob("*.yaml"))


def set_source(repo: Path, index: int, source: str) -> None:
    """Replace the `source:` of implementation `index` in the fixture's impls.yaml."""
    lines = (repo / "impls.yaml").read_text().splitlines(keepends=True)
    sources = [n for n, line in enumerate(lines) if line.lstrip().startswith("source:")]
    lines[sources[index]] = f"    source: {source}\n"
    (repo / "impls.yaml").write_text("".join(lines))


def refused(run_cli, repo: Path, tmp_path: Path, *words: str) -> str:
    out = tmp_path / "m.yaml"
    code, stdout, stderr = run_cli("matrix", "--root", str(repo), "-o", str(out))
    assert code == EXIT_BAD_INPUT, stderr
    assert "Traceback" not in stderr and not stdout
    for word in words:
        assert word in stderr
    assert not out.exists() and not matrix_files(run_cli.cache)
    return stderr


@pytest.mark.parametrize("path", ["/etc", "../../..", "impl/../../..", "/", "impl/rust/v0.53/../../../..",
                                  "x" * 300, "a/" * 600 + "a"])
def test_a_source_path_outside_the_repository_exits_2(repo: Path, run_cli, tmp_path: Path,
                                                     path: str) -> None:
    set_source(repo, 2, f"{{type: local, path: {path!r}}}")
    refused(run_cli, repo, tmp_path, "impls.yaml: implementations[2].source.path:",
            "expected a relative path inside the repository")


def test_a_symlink_out_of_the_repository_is_refused(repo: Path, run_cli, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "Makefile").write_text("all:\n")
    os.symlink(outside, repo / "impl/go/v0.99")
    set_source(repo, 2, "{type: local, path: impl/go/v0.99}")
    refused(run_cli, repo, tmp_path, "implementations[2].source.path:", "resolves to",
            "outside the repository")
    os.symlink(repo / "impl/rust/v0.54", repo / "impl/go/v0.98")  # a link that stays inside
    set_source(repo, 2, "{type: local, path: impl/go/v0.98}")
    code, _, stderr = run_cli("matrix", "--root", str(repo), "-o", str(tmp_path / "m.yaml"))
    assert code == EXIT_OK, stderr


def test_a_dockerfile_must_stay_in_its_source_folder(repo: Path, run_cli, tmp_path: Path) -> None:
    set_source(repo, 0, "{type: local, path: impl/rust/v0.53, dockerfile: ../v0.54/Dockerfile}")
    refused(run_cli, repo, tmp_path, "implementations[0].source.dockerfile:",
            "inside its source folder")
    os.symlink(repo / "impl/rust/v0.54/Makefile", repo / "impl/rust/v0.53/Dockerfile.link")
    set_source(repo, 0, "{type: local, path: impl/rust/v0.53, dockerfile: Dockerfile.link}")
    refused(run_cli, repo, tmp_path, "implementations[0].source.dockerfile:", "resolves to",
            "outside its source folder impl/rust/v0.53")


def test_a_dangling_symlink_in_a_source_is_hashed_not_followed(repo: Path, run_cli,
                                                                tmp_path: Path) -> None:
    os.symlink("/nonexistent/holepunch-test", repo / "impl/go/v0.43/dangling")
    os.symlink("/etc", repo / "impl/go/v0.43/etc")
    code, _, stderr = run_cli("matrix", "--root", str(repo), "-o", str(tmp_path / "m.yaml"))
    assert code == EXIT_OK, stderr


@pytest.mark.parametrize("text, key", [
    ("implementations:\n  - id: \"go-v0.43\\n\"\n    source: {type: local, path: impl/go/v0.43}\n"
     "    transports: [tcp]\n", "implementations[0].id"),
    ("implementations:\n  - id: go-v0.43\n    source: {type: github, repo: "
     "'https://github.com/libp2p/go-libp2p', commit: " + "a" * 40 + "}\n    transports: [tcp]\n",
     "implementations[0].source.repo"),
    ("implementations:\n  - id: go-v0.43\n    source: {type: github, repo: libp2p/go-libp2p, "
     "commit: \"" + "a" * 40 + "\\n\"}\n    transports: [tcp]\n", "implementations[0].source.commit"),
    ("implementations:\n  - id: go-v0.43\n    source: {type: local, path: impl/go/v0.43}\n"
     "    transports: [tcp]\n    transports: [quic]\n", "line 5, column 5"),
])
def test_hostile_values_exit_2_naming_the_key(repo: Path, run_cli, tmp_path: Path, text: str,
                                              key: str) -> None:
    (repo / "impls.yaml").write_text(text)
    refused(run_cli, repo, tmp_path, f"impls.yaml: {key}:")


def test_a_duplicate_key_in_a_selection_file_exits_2(repo: Path, run_cli, tmp_path: Path) -> None:
    (repo / "test-selection.yaml").write_text("test-ignore: [a]\ntest-filter: []\ntest-ignore: []\n")
    refused(run_cli, repo, tmp_path, "test-selection.yaml: line 3, column 1:",
            "duplicate key 'test-ignore' (first given on line 1)")


def test_an_alias_cycle_in_impls_yaml_exits_2(repo: Path, run_cli, tmp_path: Path) -> None:
    with (repo / "impls.yaml").open("a") as handle:
        handle.write("test-aliases:\n  a: ~b\n  b: [x, ~a]\n")
    refused(run_cli, repo, tmp_path, "impls.yaml: test-aliases.b:",
            "alias refers to itself: ~a -> ~b -> ~a")


def test_a_duplicate_key_in_results_yaml_exits_2(run_cli, tmp_path: Path) -> None:
    source = tmp_path / "results.yaml"
    source.write_text("metadata: {testPass: x}\ntests: []\nmetadata: {testPass: y}\n")
    code, _, stderr = run_cli("report", str(source))
    assert code == EXIT_BAD_INPUT and "duplicate key 'metadata'" in stderr
    assert not (tmp_path / "results.md").exists()


def test_a_test_pass_with_a_hostile_manifest_exits_2(run_cli, tmp_path: Path) -> None:
    folder = tmp_path / "pass"
    folder.mkdir()
    (folder / "test-matrix.yaml").write_text(
        "metadata: {generatedAt: '2026-01-01T00:00:00Z', totalTests: 0}\ntests: []\n")
    (folder / "images.yaml").write_text("- not a mapping\n")
    (folder / "settings.yaml").write_text("testPass: {name: x, kind: full}\n")
    code, _, stderr = run_cli("rerun", str(folder))
    assert code == EXIT_BAD_INPUT and "images.yaml" in stderr and "Traceback" not in stderr
    (folder / "images.yaml").write_text("{}\n")
    (folder / "settings.yaml").write_text("testPass: [x]\nexecution: {cacheDir: /c, retries: many}\n")
    code, _, stderr = run_cli("rerun", str(folder))
    assert code == EXIT_BAD_INPUT and "settings.yaml: testPass:" in stderr
    assert "execution.retries" in stderr


def crash(*_, **__):
    raise RuntimeError("boom at redis://user:s3cret@broker:6379/0\nsecond line")


def test_an_unexpected_exception_is_one_line_and_a_log(repo: Path, run_cli, tmp_path: Path,
                                                       monkeypatch) -> None:
    monkeypatch.setattr("controller.plan.matrix.plan_matrix", crash)
    code, stdout, stderr = run_cli("matrix", "--root", str(repo), "-o", str(tmp_path / "m.yaml"))
    assert code == EXIT_INTERNAL == 4
    assert "Traceback" not in stderr and not stdout
    (line,) = stderr.strip().splitlines()
    assert line.startswith("holepunch-controller: internal error (RuntimeError: boom")
    (log,) = (run_cli.cache / "logs").glob("holepunch-controller-crash-*.log")
    assert str(log) in line and "s3cret" not in line
    text = log.read_text()
    assert "Traceback" in text and "in crash" in text and "second line" in text
    assert "s3cret" not in text and "redis://***@broker" in text  # credentials never written
    assert log.stat().st_mode & 0o077 == 0


def test_ctrl_c_still_exits_130(repo: Path, run_cli, tmp_path: Path, monkeypatch) -> None:
    def interrupted(*_, **__):
        raise KeyboardInterrupt
    monkeypatch.setattr("controller.plan.matrix.plan_matrix", interrupted)
    code, _, stderr = run_cli("matrix", "--root", str(repo), "-o", str(tmp_path / "m.yaml"))
    assert code == EXIT_INTERRUPTED == 130 and "Traceback" not in stderr


def test_the_worker_never_shows_a_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    from worker import cli
    monkeypatch.setattr(cli, "Host", crash)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--cache-dir", str(tmp_path / "cache")])
    assert exited.value.code == EXIT_INTERNAL
    (line,) = capsys.readouterr().err.strip().splitlines()
    (log,) = (tmp_path / "cache" / "logs").glob("holepunch-worker-crash-*.log")
    assert line.startswith("holepunch-worker: internal error (RuntimeError: boom") and str(log) in line

    def interrupted(*_, **__):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "Host", interrupted)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--cache-dir", str(tmp_path / "cache")])
    assert exited.value.code == EXIT_INTERRUPTED
    with pytest.raises(SystemExit) as exited:
        cli.main(["--public-subnet", "nonsense"])
    assert exited.value.code == EXIT_BAD_INPUT


def test_both_help_texts_list_exit_code_4(run_cli) -> None:
    from click.testing import CliRunner

    from worker.cli import cli as worker_cli
    code, stdout, _ = run_cli("--help")
    assert code == EXIT_OK and "4 internal error" in " ".join(stdout.split())
    assert "4 internal error" in " ".join(CliRunner().invoke(worker_cli, ["--help"]).output.split())
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert "`4` internal error" in readme


def test_unwritable_or_missing_files_the_user_named_exit_2(repo: Path, run_cli,
                                                           tmp_path: Path) -> None:
    source = tmp_path / "results.yaml"
    source.write_text((Path(__file__).parent / "golden" / "results.yaml").read_text())
    code, _, stderr = run_cli("report", str(source), "--update-readme", str(tmp_path / "nope.md"))
    assert code == EXIT_BAD_INPUT and "nope.md: file not found" in stderr
    (tmp_path / "README.md").write_text("no markers here\n")
    code, _, stderr = run_cli("report", str(source), "--update-readme", str(tmp_path / "README.md"))
    assert code == EXIT_BAD_INPUT and "marker not found" in stderr
    assert not (tmp_path / "results.md").exists()  # checked before anything was written
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, stderr = run_cli("matrix", "--root", str(repo), "-o", str(blocker / "m.yaml"))
    assert code == EXIT_BAD_INPUT and "--output: cannot write" in stderr


@pytest.mark.parametrize("kind", ["../..", "../../..", "rust/../go", "/etc", "rust\n", ".."])
def test_kind_is_a_language_name_not_a_path(repo: Path, run_cli, tmp_path: Path, kind: str) -> None:
    (tmp_path / "test-selection.yaml").write_text("test-filter: [go]\n")  # what '..' would reach
    (repo / "impl/test-selection.yaml").write_text("test-filter: [go]\n")
    code, _, stderr = run_cli("matrix", "--root", str(repo), "--kind", kind, "-o",
                              str(tmp_path / "m.yaml"))
    assert code == EXIT_BAD_INPUT and "--kind" in stderr and "expected one of: full, auto" in stderr


def test_a_crash_log_masks_secrets_on_the_command_line(tmp_path: Path, monkeypatch) -> None:
    from cluster.crash import write_crash_log
    monkeypatch.setattr("sys.argv", ["holepunch-controller", "cluster", "up", "--flower-auth",
                                     "admin:hunter2", "--broker=redis://:pw1@host:6379/0"])
    log = write_crash_log("holepunch-controller", RuntimeError("x"), tmp_path)
    text = log.read_text()
    assert "hunter2" not in text and "pw1" not in text and "--flower-auth ***" in text
