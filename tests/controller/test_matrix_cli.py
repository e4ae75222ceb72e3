"""`holepunch-controller matrix`: the selection printed, test-matrix.yaml written and cached."""

import subprocess
from pathlib import Path

import yaml

from cluster.errors import EXIT_BAD_INPUT, EXIT_OK


def matrix_files(cache: Path) -> list[Path]:
    return sorted((cache / "test-matrix").glob("*.yaml"))


def test_full_matrix_in_seed_format(repo: Path, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    code, stdout, stderr = run_cli("matrix", "--root", str(repo), "-o", str(out))
    assert code == EXIT_OK, stderr
    assert stdout.splitlines()[0] == "rust-v0.53 x rust-v0.53 (tcp)"
    data = yaml.safe_load(out.read_text())
    assert list(data) == ["metadata", "tests"]
    assert data["metadata"]["totalTests"] == 18 == len(data["tests"])
    assert data["metadata"]["ignore"] == ["experimental"]
    first = data["tests"][0]
    assert list(first) == ["name", "dialer", "listener", "transport", "dialerSnapshot",
                           "listenerSnapshot"]
    assert first["dialerSnapshot"].startswith("snapshots/") and len(first["dialerSnapshot"]) == 78
    assert "18 tests" in stderr and "generated" in stderr


def test_dash_prints_the_matrix_yaml(repo: Path, run_cli, tmp_path: Path) -> None:
    code, stdout, stderr = run_cli("matrix", "--root", str(repo), "-o", "-")
    assert code == EXIT_OK, stderr
    assert yaml.safe_load(stdout)["metadata"]["totalTests"] == 18
    assert not (Path.cwd() / "-").exists() and "-> standard output" in stderr


def test_matrix_is_cached_by_inputs(repo: Path, run_cli, tmp_path: Path) -> None:
    out = str(tmp_path / "m.yaml")
    run_cli("matrix", "--root", str(repo), "-o", out)
    assert len(matrix_files(run_cli.cache)) == 1
    code, _, stderr = run_cli("matrix", "--root", str(repo), "-o", out)
    assert code == EXIT_OK and "cached" in stderr
    (repo / "impl/rust/README.md").write_text("docs only\n")  # not an input: still a hit
    (repo / "impl/rust/v0.53/image.yaml").write_text("generated\n")
    assert "cached" in run_cli("matrix", "--root", str(repo), "-o", out)[2]
    assert len(matrix_files(run_cli.cache)) == 1
    (repo / "impl/rust/v0.53/main.rs").write_text("fn main() {}\n")  # a source change misses
    assert "generated" in run_cli("matrix", "--root", str(repo), "-o", out)[2]
    (repo / "impls.yaml").write_text((repo / "impls.yaml").read_text().replace("[tcp, quic]\n", "[tcp]\n", 1))
    assert "generated" in run_cli("matrix", "--root", str(repo), "-o", out)[2]
    assert "generated" in run_cli("matrix", "--root", str(repo), "-o", out, "--test-filter", "go")[2]
    assert len(matrix_files(run_cli.cache)) == 4


def test_kind_lang_uses_its_selection_file(repo: Path, run_cli, tmp_path: Path) -> None:
    code, stdout, _ = run_cli("matrix", "--root", str(repo), "--kind", "rust",
                              "-o", str(tmp_path / "m.yaml"))
    assert code == EXIT_OK
    assert "rust-v0.53 x rust-v0.54 (tcp)" not in stdout
    assert "rust-v0.54 x rust-v0.53 (tcp)" in stdout


def test_cli_flags_override_independently(repo: Path, run_cli, tmp_path: Path) -> None:
    out = str(tmp_path / "m.yaml")
    _, stdout, _ = run_cli("matrix", "--root", str(repo), "--kind", "rust", "-o", out,
                           "--test-filter", "rust-v0.53 x rust-v0.5")
    assert stdout.split() and "rust-v0.53 x rust-v0.54 (tcp)" not in stdout  # default ignore kept
    _, stdout, _ = run_cli("matrix", "--root", str(repo), "--kind", "rust", "-o", out,
                           "--test-filter", "rust-v0.53 x rust-v0.5", "--test-ignore", "")
    assert "rust-v0.53 x rust-v0.54 (tcp)" in stdout


def test_kind_auto_from_git_diff(git_repo: Path, run_cli, tmp_path: Path) -> None:
    def commit(path: str) -> None:
        (git_repo / path).write_text("changed\n")
        subprocess.run(["git", "-C", str(git_repo), "-c", "user.email=t@t", "-c", "user.name=t",
                        "commit", "-qam", "x"], check=True)
    (git_repo / "impl/go/v0.43/main.go").write_text("package main\n")
    subprocess.run(["git", "-C", str(git_repo), "add", "."], check=True)
    commit("impl/go/v0.43/main.go")
    code, stdout, stderr = run_cli("matrix", "--root", str(git_repo), "--kind", "auto",
                                   "-o", str(tmp_path / "m.yaml"))
    assert code == EXIT_OK and "--kind auto: go (change in impl/go/**)" in stderr
    assert all("go-v0.43" in line for line in stdout.splitlines())
    commit("impls.yaml")
    _, _, stderr = run_cli("matrix", "--root", str(git_repo), "--kind", "auto",
                           "-o", str(tmp_path / "m.yaml"))
    assert "--kind auto: full (change outside impl/<lang>/: impls.yaml)" in stderr


def test_bad_inputs_exit_2_and_write_nothing(repo: Path, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    code, _, stderr = run_cli("matrix", "--root", str(repo), "--kind", "java", "-o", str(out))
    assert code == EXIT_BAD_INPUT and "--kind" in stderr and "impl/java" in stderr
    code, _, stderr = run_cli("matrix", "--root", str(repo), "--test-filter", "nothing-like-this",
                              "-o", str(out))
    assert code == EXIT_BAD_INPUT and "matches no test" in stderr
    (repo / "impls.yaml").write_text("implementations:\n  - id: x\n    transports: [tcp]\n")
    code, _, stderr = run_cli("matrix", "--root", str(repo), "-o", str(out))
    assert code == EXIT_BAD_INPUT
    assert "impls.yaml: implementations[0].source: required key is missing" in stderr
    (repo / "impls.yaml").write_text("implementations:\n  - id: x\n    source: {type: local}\n"
                                     "    transports: [tcp]\n")
    code, _, stderr = run_cli("matrix", "--root", str(repo), "-o", str(out))
    assert code == EXIT_BAD_INPUT and "implementations[0].source.path" in stderr
    assert "does not exist" in stderr
    (repo / "test-selection.yaml").write_text("test-filter: [a\n")
    code, _, stderr = run_cli("matrix", "--root", str(repo), "-o", str(out))
    assert code == EXIT_BAD_INPUT
    assert not out.exists() and not matrix_files(run_cli.cache)


def test_the_repository_matrix_is_real(run_cli, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    code, stdout, stderr = run_cli("matrix", "--root", str(root), "-o", str(tmp_path / "m.yaml"))
    assert code == EXIT_OK, stderr
    assert "rust-v0.53 x go-v0.51 (tcp, noise, yamux)" in stdout
    assert "go-v0.48 x rust-v0.57 (quic)" in stdout


def test_every_command_has_help(run_cli) -> None:
    for command in ([], ["matrix"], ["report"], ["check-deps"]):
        code, stdout, _ = run_cli(*command, "--help")
        assert code == EXIT_OK and "Usage:" in stdout
