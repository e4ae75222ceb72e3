"""`holepunch-controller workflows`: the committed workflows are what impls.yaml generates, and
actionlint (with shellcheck on every `run:` script) passes on each of them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from cluster.errors import EXIT_OK

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def load_workflow(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # a YAML 1.1 reader reads the key `on` as true
    return data


def tool(name: str) -> str | None:
    """The tool .ci/setup links into the venv, else one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def need_tool(name: str) -> str:
    found = tool(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing in CI: `bash .ci/setup` installs it")
        pytest.skip(f"{name} is not installed (`bash .ci/setup` installs it; required when CI=true)")
    return found


def actionlint(root: Path) -> subprocess.CompletedProcess[str]:
    """actionlint on every workflow under root, with shellcheck from the venv or PATH."""
    lint, shellcheck = need_tool("actionlint"), need_tool("shellcheck")
    files = sorted(str(p) for p in (root / ".github" / "workflows").glob("*.yml"))
    config = str(root / ".github" / "actionlint.yaml")
    return subprocess.run([lint, "-shellcheck", shellcheck, "-config-file", config, "-no-color",
                           *files], cwd=root,
                          capture_output=True, text=True, check=False)


def test_committed_workflows_are_what_impls_yaml_generates(run_cli) -> None:
    code, _, stderr = run_cli("workflows", "--root", str(REPO), "--check")
    assert code == EXIT_OK, stderr
    assert "up to date" in stderr


def test_one_workflow_per_language_plus_full_and_cluster() -> None:
    langs = {impl["id"].split("-", 1)[0]  # Implementation.lang: rust-upstream-v0.53 is rust
             for impl in yaml.safe_load((REPO / "impls.yaml").read_text())["implementations"]}
    names = {p.name for p in WORKFLOWS.glob("*.yml")}
    assert names == {f"hole-punch-{lang}.yml" for lang in langs} | {
        "hole-punch-full.yml", "hole-punch-cluster.yml"}


def test_check_names_a_workflow_edited_by_hand(repo: Path, run_cli) -> None:
    assert run_cli("workflows", "--root", str(repo))[0] == EXIT_OK
    rust = repo / ".github/workflows/hole-punch-rust.yml"
    rust.write_text(rust.read_text().replace("timeout-minutes: 240", "timeout-minutes: 10"))
    code, _, stderr = run_cli("workflows", "--root", str(repo), "--check")
    assert code == 1
    assert ".github/workflows/hole-punch-rust.yml: differs" in stderr
    assert "hole-punch-go.yml" not in stderr
    rust.unlink()
    code, _, stderr = run_cli("workflows", "--root", str(repo), "--check")
    assert code == 1 and ".github/workflows/hole-punch-rust.yml: missing" in stderr


def test_adding_a_language_is_one_edit(repo: Path, run_cli) -> None:
    assert run_cli("workflows", "--root", str(repo))[0] == EXIT_OK
    (repo / "impl/zig/v0.1").mkdir(parents=True)
    with (repo / "impls.yaml").open("a") as impls:
        impls.write("  - id: zig-v0.1\n    source: {type: local, path: impl/zig/v0.1}\n"
                    "    transports: [tcp]\n")
    code, _, stderr = run_cli("workflows", "--root", str(repo), "--check")
    assert code == 1 and ".github/workflows/hole-punch-zig.yml: missing" in stderr
    assert run_cli("workflows", "--root", str(repo))[0] == EXIT_OK
    zig = load_workflow(repo / ".github/workflows/hole-punch-zig.yml")
    assert "impl/zig/**" in zig["on"]["pull_request"]["paths"]
    step = next(s for s in zig["jobs"]["pass"]["steps"] if s.get("id") == "pass")
    assert step["env"]["HOLEPUNCH_KIND"] == "zig"


def test_a_dropped_language_leaves_no_workflow_behind(repo: Path, run_cli) -> None:
    assert run_cli("workflows", "--root", str(repo))[0] == EXIT_OK
    impls = repo / "impls.yaml"
    impls.write_text(impls.read_text().split("  - id: go-v0.43")[0])
    code, _, stderr = run_cli("workflows", "--root", str(repo), "--check")
    assert code == 1 and "hole-punch-go.yml: generated for a language" in stderr
    assert run_cli("workflows", "--root", str(repo))[0] == EXIT_OK
    assert not (repo / ".github/workflows/hole-punch-go.yml").exists()


def test_bad_impls_yaml_is_bad_input(repo: Path, run_cli) -> None:
    (repo / "impls.yaml").write_text("implementations: 3\n")
    code, _, stderr = run_cli("workflows", "--root", str(repo))
    assert code == 2 and "impls.yaml" in stderr and "implementations" in stderr


def test_actionlint_passes_on_every_workflow() -> None:
    result = actionlint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_here_catches_a_broken_script(repo: Path, run_cli) -> None:
    """The lint above can fail: shellcheck runs on the scripts, actionlint on expressions."""
    assert run_cli("workflows", "--root", str(repo))[0] == EXIT_OK
    go = repo / ".github/workflows/hole-punch-go.yml"
    text = go.read_text()
    go.write_text(text.replace('holepunch-controller "${args[@]}"', "holepunch-controller ${args[@]}")
                  .replace("steps.zip.outputs.path", "steps.zipp.outputs.path"))
    result = actionlint(repo)
    assert result.returncode == 1
    assert "SC2068" in result.stdout and "zipp" in result.stdout
    assert "hole-punch-rust.yml" not in result.stdout  # the custom runner labels are known


def test_no_expression_is_pasted_into_a_script() -> None:
    """Inputs reach scripts through env: only, so a crafted input cannot run as shell."""
    for path in WORKFLOWS.glob("*.yml"):
        for job in load_workflow(path)["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), (path.name, step.get("name"))


def test_the_dashboard_commit_cannot_start_a_workflow() -> None:
    """README.md is in no paths filter, and the commit says [skip ci]: no loop."""
    for path in WORKFLOWS.glob("*.yml"):
        on = load_workflow(path)["on"]
        for event in ("push", "pull_request"):
            if event in on:
                assert not any(fnmatch("README.md", p) for p in on[event]["paths"]), path.name
        if "push" in on:
            assert on["push"]["branches"] == ["main"]


def test_dispatch_inputs_are_the_seeds_four() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        inputs = load_workflow(path)["on"]["workflow_dispatch"]["inputs"]
        assert {k: inputs[k]["type"] for k in ("use_custom_filter", "test_filter",
                                              "use_custom_ignore", "test_ignore")} == {
            "use_custom_filter": "boolean", "test_filter": "string",
            "use_custom_ignore": "boolean", "test_ignore": "string"}, path.name


def test_each_pass_uploads_its_zip_for_30_days_and_sets_up_through_ci_setup() -> None:
    for path in WORKFLOWS.glob("hole-punch-*.yml"):
        jobs = load_workflow(path)["jobs"]
        submitting = [job for job in jobs.values()
                      if any(s.get("id") == "pass" for s in job["steps"])]
        assert len(submitting) == 1, path.name
        steps = submitting[0]["steps"]
        upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
        assert upload["with"]["retention-days"] == 30
        assert upload["with"]["path"] == "${{ steps.zip.outputs.path }}"
        for job in jobs.values():
            runs = [s["run"] for s in job["steps"] if "run" in s]
            if any("holepunch-" in run for run in runs):
                assert runs[0].splitlines()[0] == "bash .ci/setup", (path.name, job["name"])


def test_pull_requests_from_forks_do_not_run_on_our_runners() -> None:
    for path in WORKFLOWS.glob("hole-punch-*.yml"):
        workflow = load_workflow(path)
        if "pull_request" in workflow["on"]:
            for job in workflow["jobs"].values():
                assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]
