"""The workflows' step scripts, run here as a runner would run them: the text is taken from the
committed YAML and given to `bash -eo pipefail` (GitHub's `shell: bash`) with the env the step
declares. Fakes stand in for holepunch-controller/holepunch-worker where a pass would start
(named fake_*); git, Redis and the dashboard rendering are real."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.controller.test_workflows import WORKFLOWS, load_workflow

GOLDEN = Path(__file__).parent / "golden"
VENV_BIN = Path(sys.executable).parent

FAKE_CONTROLLER = """\
#!/usr/bin/env python3
# fake holepunch-controller: records its argv as JSON, or idles as a fake reporter
import json, os, sys, time
if sys.argv[1:2] == ["reporter"]:
    open(os.environ["FAKE_REPORTER_STARTED"], "w").write(os.environ.get("HOLEPUNCH_BROKER", ""))
    time.sleep(600)
with open(os.environ["FAKE_ARGV"], "w") as out:
    json.dump(sys.argv[1:], out)
"""

FAKE_WORKER = """\
#!/usr/bin/env bash
# fake holepunch-worker: records its argv, idles until SIGTERM (Celery's warm shutdown)
printf '%s\\n' "$@" > "$FAKE_WORKER_ARGV"
if [ -n "${FAKE_WORKER_EXIT:-}" ]; then exit "$FAKE_WORKER_EXIT"; fi
trap 'echo TERM > "$FAKE_WORKER_SIGNAL"; exit 0' TERM
while :; do sleep 0.05; done
"""


def step(workflow: str, step_id: str, job: str | None = None) -> dict:
    jobs = load_workflow(WORKFLOWS / workflow)["jobs"]
    steps = jobs[job or next(iter(jobs))]["steps"]
    return next(s for s in steps if s.get("id") == step_id)


def literal_env(found: dict) -> dict[str, str]:
    """The step's env entries that are plain values (the `${{ }}` ones a test supplies)."""
    return {k: str(v) for k, v in found.get("env", {}).items() if "${{" not in str(v)}


def make_bin(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)
    return folder


def runner_env(tmp: Path, extra: dict[str, str], bin_dirs: list[Path]) -> dict[str, str]:
    for name in ("output", "summary", "path"):
        (tmp / f"github-{name}").touch()
    return {"PATH": os.pathsep.join([*map(str, bin_dirs), os.environ["PATH"]]),
            "HOME": os.environ.get("HOME", str(tmp)), "RUNNER_TEMP": str(tmp),
            "GITHUB_OUTPUT": str(tmp / "github-output"),
            "GITHUB_STEP_SUMMARY": str(tmp / "github-summary"),
            "GITHUB_PATH": str(tmp / "github-path"), **extra}


def bash(script: str, env: dict[str, str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          env=env, cwd=cwd, capture_output=True, text=True, **kwargs)


# -- dispatch inputs -> submit's argv ------------------------------------------------------------

def render_env(declared: dict, inputs: dict | None, event: str) -> dict[str, str]:
    """The step's env as GitHub renders it: `${{ inputs.NAME }}` becomes the dispatch input
    (a boolean as 'true'/'false', an unset one its default), or '' on a push, which has no
    inputs. Other expressions are left to the test."""
    workflow_inputs = load_workflow(WORKFLOWS / "hole-punch-rust.yml")["on"]["workflow_dispatch"]["inputs"]
    rendered = {}
    for key, value in declared.items():
        match = re.fullmatch(r"\$\{\{ inputs\.(\w+) \}\}", str(value))
        if match is None:
            if "${{" not in str(value):
                rendered[key] = str(value)
            continue
        name = match.group(1)
        if event != "workflow_dispatch":
            rendered[key] = ""
            continue
        given = (inputs or {}).get(name, workflow_inputs[name]["default"])
        rendered[key] = ("true" if given else "false") if isinstance(given, bool) else str(given)
    return rendered


def run_submit_step(tmp_path: Path, workflow: str, inputs: dict | None,
                    event: str = "workflow_dispatch", extra: dict[str, str] | None = None) -> list[str]:
    """Run the pass step of `workflow` with these dispatch inputs rendered into its env."""
    found = step(workflow, "pass", "broker" if "cluster" in workflow else None)
    fake = make_bin(tmp_path / "fake-bin", "holepunch-controller", FAKE_CONTROLLER)
    env = runner_env(tmp_path, {**render_env(found["env"], inputs, event), **(extra or {}),
                                "HOLEPUNCH_OUTPUT": "/out", "FAKE_ARGV": str(tmp_path / "argv.json")},
                     [fake])
    result = bash(found["run"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads((tmp_path / "argv.json").read_text())


BASE = ["submit", "--kind", "rust", "-o", "/out"]


@pytest.mark.parametrize(("inputs", "flags"), [
    pytest.param({}, [], id="dispatch with the defaults"),
    pytest.param({"use_custom_filter": False, "test_filter": "rust-v0.53",
                  "use_custom_ignore": False, "test_ignore": "x"}, [], id="boxes unchecked"),
    pytest.param({"use_custom_filter": True, "test_filter": "rust-v0.53|go-v0.51"},
                 ["--test-filter", "rust-v0.53|go-v0.51"], id="filter with a pipe"),
    pytest.param({"use_custom_ignore": True, "test_ignore": 'x "quoted"'},
                 ["--test-ignore", 'x "quoted"'], id="ignore with quotes"),
    pytest.param({"use_custom_ignore": True, "test_ignore": ""},
                 ["--test-ignore", ""], id="checked and empty"),
    pytest.param({"use_custom_filter": True, "test_filter": "",
                  "use_custom_ignore": True, "test_ignore": "~js|!tcp"},
                 ["--test-filter", "", "--test-ignore", "~js|!tcp"], id="both"),
    pytest.param({"use_custom_filter": True, "test_filter": "a'b * $HOME `id` \\ c"},
                 ["--test-filter", "a'b * $HOME `id` \\ c"], id="shell characters"),
])
def test_dispatch_inputs_become_exactly_these_flags(tmp_path: Path, inputs, flags) -> None:
    assert run_submit_step(tmp_path, "hole-punch-rust.yml", inputs) == BASE + flags


@pytest.mark.parametrize("event", ["push", "pull_request"])
def test_events_without_inputs_keep_the_yaml_selection(tmp_path: Path, event: str) -> None:
    assert run_submit_step(tmp_path, "hole-punch-rust.yml", None, event) == BASE


def test_an_input_cannot_run_as_shell(tmp_path: Path) -> None:
    evil = "$(touch pwned1)'; touch pwned2; echo '\"; touch pwned3 #"
    argv = run_submit_step(tmp_path, "hole-punch-rust.yml",
                           {"use_custom_filter": True, "test_filter": evil})
    assert argv == BASE + ["--test-filter", evil]
    assert not list(tmp_path.glob("pwned*"))


def test_full_and_cluster_submit_their_kind(tmp_path: Path) -> None:
    assert run_submit_step(tmp_path / "f", "hole-punch-full.yml", {})[:3] == ["submit", "--kind", "full"]
    argv = run_submit_step(tmp_path / "c", "hole-punch-cluster.yml", {"use_custom_ignore": True},
                           extra={"HOLEPUNCH_IMAGE_SOURCE": "http://10.0.0.5:18080"})
    assert argv == ["submit", "--kind", "full", "-o", "/out", "--test-ignore", "",
                    "--image-source", "http://10.0.0.5:18080"]


def test_checked_and_empty_bypasses_the_yaml_default(tmp_path: Path, repo: Path, run_cli) -> None:
    """The argv the step builds, given to the real CLI: '' drops the file's test-ignore."""
    def selected(inputs: dict[str, str]) -> dict:
        argv = run_submit_step(tmp_path / str(len(inputs)), "hole-punch-rust.yml", inputs)
        code, out, err = run_cli("matrix", "--root", str(repo), *argv[1:3], *argv[5:], "-o", "-")
        assert code == 0, err
        return yaml.safe_load(out)["metadata"]
    default = selected({})
    bypassed = selected({"use_custom_ignore": True, "test_ignore": ""})
    assert default["ignore"] and default["ignoredTests"] > 0
    assert bypassed["ignore"] == [] and bypassed["ignoredTests"] == 0
    assert bypassed["totalTests"] == default["totalTests"] + default["ignoredTests"]


# -- the test-pass zip ---------------------------------------------------------------------------

def test_zip_step_finds_this_pass_zip(tmp_path: Path) -> None:
    found = step("hole-punch-go.yml", "zip")
    out, cache = tmp_path / "out", tmp_path / "cache"
    (cache / "test-passes").mkdir(parents=True)
    out.mkdir()
    shutil.copy(GOLDEN / "results.yaml", out / "results.yaml")
    (out / "results.md").write_text("# results\n")
    zip_path = cache / "test-passes" / "hole-punch-full-143022-08-11-2025.zip"
    (cache / "test-passes" / "hole-punch-full-000000-01-01-2025.zip").touch()  # an older pass
    env = runner_env(tmp_path, {"HOLEPUNCH_OUTPUT": str(out), "HOLEPUNCH_CACHE": str(cache)}, [VENV_BIN])
    assert bash(found["run"], env, tmp_path).returncode == 1  # results name a zip that is absent
    zip_path.touch()
    result = bash(found["run"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    outputs = (tmp_path / "github-output").read_text().splitlines()
    assert f"path={zip_path}" in outputs and "name=hole-punch-full-143022-08-11-2025" in outputs
    assert "# results" in (tmp_path / "github-summary").read_text()


# -- the README dashboard commit -----------------------------------------------------------------

README = ("# project\n\nintro\n\n## Dashboard\n\n"
          "<!--INTEROP_DASHBOARD_START-->\nnothing yet\n<!--INTEROP_DASHBOARD_END-->\n")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def scratch_remote(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bare remote, a developer's clone that seeded it, and the runner's clone."""
    remote, dev, ci = tmp_path / "remote.git", tmp_path / "dev", tmp_path / "ci"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "clone", "-q", str(remote), str(dev)], check=True, capture_output=True)
    (dev / "README.md").write_text(README)
    (dev / "impls.yaml").write_text("implementations: []\n")
    git(dev, "add", ".")
    git(dev, "commit", "-qm", "first")
    git(dev, "push", "-q", "origin", "HEAD:main")
    subprocess.run(["git", "clone", "-q", str(remote), str(ci)], check=True, capture_output=True)
    return remote, dev, ci


def run_dashboard(tmp_path: Path, ci: Path, results: Path) -> subprocess.CompletedProcess[str]:
    found = step("hole-punch-rust.yml", "dashboard")
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    shutil.copy(results, out / "results.yaml")
    name = yaml.safe_load(results.read_text())["metadata"]["testPass"]
    env = runner_env(tmp_path, {**literal_env(found), "HOLEPUNCH_OUTPUT": str(out),
                                "HOLEPUNCH_PASS": name}, [VENV_BIN])
    return bash(found["run"], env, ci)


def test_dashboard_is_committed_with_skip_ci_and_pushed(tmp_path: Path, scratch_remote) -> None:
    remote, _, ci = scratch_remote
    (ci / "stray.txt").write_text("an untracked file the pass left\n")
    result = run_dashboard(tmp_path, ci, GOLDEN / "results.yaml")
    assert result.returncode == 0, result.stderr
    assert "dashboard: pushed" in result.stdout
    assert git(remote, "log", "-1", "--format=%s", "main") == \
        "Hole punch dashboard: hole-punch-full-143022-08-11-2025 [skip ci]"
    assert git(remote, "show", "--name-only", "--format=", "main") == "README.md"
    readme = git(remote, "show", "main:README.md")
    assert "nothing yet" not in readme and "rust-v0.53" in readme and readme.startswith("# project")
    head = git(remote, "rev-parse", "main")

    again = run_dashboard(tmp_path, ci, GOLDEN / "results.yaml")
    assert again.returncode == 0, again.stderr
    assert "README.md unchanged, nothing to commit" in again.stdout
    assert git(remote, "rev-parse", "main") == head


def test_dashboard_survives_a_push_that_raced(tmp_path: Path, scratch_remote) -> None:
    """Another push lands between the runner's fetch and its push (a pre-push hook makes it
    land exactly then): the step starts again on the new main and keeps both changes."""
    remote, dev, ci = scratch_remote
    (dev / "README.md").write_text(README.replace("intro", "intro, edited meanwhile"))
    git(dev, "commit", "-qam", "meanwhile")
    hook = ci / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/usr/bin/env bash\nif [ ! -e {tmp_path}/raced ]; then touch {tmp_path}/raced; "
                    f"git -C {dev} push -q origin HEAD:main; fi\n")
    hook.chmod(0o755)
    result = run_dashboard(tmp_path, ci, GOLDEN / "results.yaml")
    assert result.returncode == 0, result.stderr
    assert "push 1 raced another push" in result.stdout and (tmp_path / "raced").exists()
    log = git(remote, "log", "--format=%s", "main").splitlines()
    assert log[:2] == ["Hole punch dashboard: hole-punch-full-143022-08-11-2025 [skip ci]", "meanwhile"]
    readme = git(remote, "show", "main:README.md")
    assert "intro, edited meanwhile" in readme and "rust-v0.53" in readme


# -- the cluster workflow: hosts, broker, workers ------------------------------------------------

@pytest.mark.parametrize(("workers", "hosts"), [("1", [1]), ("3", [1, 2, 3])])
def test_hosts_become_a_static_matrix(tmp_path: Path, workers: str, hosts: list[int]) -> None:
    found = step("hole-punch-cluster.yml", "hosts", "plan")
    result = bash(found["run"], runner_env(tmp_path, {"WORKERS": workers}, []), tmp_path)
    assert result.returncode == 0, result.stderr
    line = (tmp_path / "github-output").read_text().strip()
    assert json.loads(line.removeprefix("list=")) == hosts


@pytest.mark.parametrize("workers", ["0", "33", "2; touch pwned", "", "1.5"])
def test_a_bad_host_count_is_refused(tmp_path: Path, workers: str) -> None:
    found = step("hole-punch-cluster.yml", "hosts", "plan")
    result = bash(found["run"], runner_env(tmp_path, {"WORKERS": workers}, []), tmp_path)
    assert result.returncode == 2 and "expected a whole number from 1 to 32" in result.stdout
    assert not (tmp_path / "pwned").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class ClusterEnv(dict):
    """The jobs' environment, and the worker jobs a test started (stopped at teardown)."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.jobs: list[subprocess.Popen[str]] = []


@pytest.fixture
def cluster_env(tmp_path: Path):
    """The cluster jobs' env on loopback (as GitHub renders it from the secret and the
    variable), fake holepunch binaries, and a guarantee the broker it starts is shut down."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (`bash .ci/setup` installs it)")
    password = "s3cret-Passw0rd.for_tests"
    port, cache_port = free_port(), free_port()
    fakes = make_bin(tmp_path / "fake-bin", "holepunch-controller", FAKE_CONTROLLER)
    make_bin(fakes, "holepunch-worker", FAKE_WORKER)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "probe.txt").write_text("served\n")
    env = runner_env(tmp_path, {
        "BROKER_HOST": "127.0.0.1", "BROKER_PORT": str(port), "CACHE_PORT": str(cache_port),
        "REDISCLI_AUTH": password, "HOLEPUNCH_BROKER": f"redis://:{password}@127.0.0.1:{port}/0",
        "HOLEPUNCH_IMAGE_SOURCE": f"http://127.0.0.1:{cache_port}",
        "HOLEPUNCH_CACHE": str(tmp_path / "cache"), "PASS_KEY": "holepunch:ci:42-1",
        "FAKE_REPORTER_STARTED": str(tmp_path / "reporter-started"),
        "FAKE_WORKER_ARGV": str(tmp_path / "worker-argv"),
        "FAKE_WORKER_SIGNAL": str(tmp_path / "worker-signal"),
    }, [fakes, VENV_BIN])
    env = ClusterEnv(env)
    yield env
    for job in env.jobs:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)  # the worker it started, if it outlived the job
        job.wait()
    bash(stop_step()["run"], env, tmp_path, timeout=60)  # the broker job's own clean-up
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], env=env,
                   capture_output=True, check=False)


def stop_step() -> dict:
    steps = load_workflow(WORKFLOWS / "hole-punch-cluster.yml")["jobs"]["broker"]["steps"]
    return next(s for s in steps if s.get("name", "").startswith("Stop the broker"))


def redis(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["redis-cli", "-h", env["BROKER_HOST"], "-p", env["BROKER_PORT"], *args],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()


def start_worker_job(env: dict[str, str], tmp_path: Path, **overrides: str) -> subprocess.Popen[str]:
    found = step("hole-punch-cluster.yml", "worker", "worker")
    worker_env = {**env, **literal_env(found), "WORKER_NAME": "ci-1-42", "POLL_SECONDS": "0.2",
                  **overrides}
    job = subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", found["run"]],
                           env=worker_env, cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    env.jobs.append(job)
    return job


def test_broker_job_and_a_worker_job_end_together(tmp_path: Path, cluster_env) -> None:
    """Start the broker (real Redis with the password, the cache server, a fake reporter), run
    a worker job against it, end the pass: the worker stops gracefully and counts itself out,
    then the broker's services stop."""
    env = cluster_env
    broker = step("hole-punch-cluster.yml", "broker", "broker")
    started = bash(broker["run"], env, tmp_path, timeout=60)
    assert started.returncode == 0, started.stderr
    assert redis(env, "ping") == "PONG"
    no_auth = subprocess.run(["redis-cli", "-p", env["BROKER_PORT"], "ping"], capture_output=True,
                             text=True, env={**env, "REDISCLI_AUTH": ""})
    assert "NOAUTH" in no_auth.stdout + no_auth.stderr
    wait_for(lambda: Path(env["FAKE_REPORTER_STARTED"]).exists())
    assert Path(env["FAKE_REPORTER_STARTED"]).read_text() == env["HOLEPUNCH_BROKER"]
    from urllib.request import urlopen
    with urlopen(f"{env['HOLEPUNCH_IMAGE_SOURCE']}/probe.txt", timeout=5) as reply:
        assert reply.read() == b"served\n"
    assert env["REDISCLI_AUTH"] not in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                      text=True).stdout

    worker = start_worker_job(env, tmp_path)
    try:
        wait_for(lambda: Path(env["FAKE_WORKER_ARGV"]).exists())
        assert Path(env["FAKE_WORKER_ARGV"]).read_text().split() == [
            "--image-source", env["HOLEPUNCH_IMAGE_SOURCE"], "-n", "ci-1-42"]
        assert worker.poll() is None  # the pass has not ended: the worker keeps running

        end = step("hole-punch-cluster.yml", "end", "broker")
        ended = bash(end["run"], {**env, "PASS_OUTCOME": "success", "HOSTS": "1"}, tmp_path, timeout=60)
        assert ended.returncode == 0, ended.stderr
        assert "1 of 1 hosts stopped their workers" in ended.stdout
        stdout, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    assert "stopped: pass ended (success)" in stdout
    assert Path(env["FAKE_WORKER_SIGNAL"]).read_text().strip() == "TERM"

    assert bash(stop_step()["run"], env, tmp_path, timeout=60).returncode == 0
    gone = subprocess.run(["redis-cli", "-p", env["BROKER_PORT"], "ping"], capture_output=True,
                          text=True, env=env)
    assert "PONG" not in gone.stdout
    with pytest.raises(OSError):
        urlopen(f"{env['HOLEPUNCH_IMAGE_SOURCE']}/probe.txt", timeout=2)


def test_a_worker_job_leaves_when_the_broker_is_gone(tmp_path: Path, cluster_env) -> None:
    env = cluster_env
    assert bash(step("hole-punch-cluster.yml", "broker", "broker")["run"], env, tmp_path,
                timeout=60).returncode == 0
    worker = start_worker_job(env, tmp_path, BROKER_MISSES="3")
    try:
        wait_for(lambda: Path(env["FAKE_WORKER_ARGV"]).exists())
        subprocess.run(
            ["redis-cli", "-p", env["BROKER_PORT"], "shutdown", "nosave"], env=env, capture_output=True)
        stdout, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    assert "stopped: broker gone" in stdout
    assert Path(env["FAKE_WORKER_SIGNAL"]).read_text().strip() == "TERM"


def test_a_worker_job_fails_without_a_broker(tmp_path: Path, cluster_env) -> None:
    worker = start_worker_job(cluster_env, tmp_path, BROKER_WAIT="1")
    stdout, _ = worker.communicate(timeout=30)
    assert worker.returncode == 3
    assert f"no broker at 127.0.0.1:{cluster_env['BROKER_PORT']}" in stdout


def test_a_worker_job_fails_when_its_worker_dies(tmp_path: Path, cluster_env) -> None:
    assert bash(step("hole-punch-cluster.yml", "broker", "broker")["run"], cluster_env, tmp_path,
                timeout=60).returncode == 0
    worker = start_worker_job(cluster_env, tmp_path, FAKE_WORKER_EXIT="7")
    stdout, _ = worker.communicate(timeout=30)
    assert worker.returncode == 3
    assert "holepunch-worker exited (7) before the pass ended" in stdout


def test_a_weak_broker_password_is_refused(tmp_path: Path, cluster_env) -> None:
    broker = step("hole-punch-cluster.yml", "broker", "broker")
    for password in ("short", "has@an:url/char-in-it"):
        result = bash(broker["run"], {**cluster_env, "REDISCLI_AUTH": password}, tmp_path)
        assert result.returncode == 2 and "HOLEPUNCH_BROKER_PASSWORD must be" in result.stdout


def test_a_busy_broker_port_is_refused(tmp_path: Path, cluster_env) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(cluster_env["BROKER_PORT"])))
        busy.listen()
        result = bash(step("hole-punch-cluster.yml", "broker", "broker")["run"], cluster_env, tmp_path)
    assert result.returncode == 3 and "something already listens on 127.0.0.1:" in result.stdout
