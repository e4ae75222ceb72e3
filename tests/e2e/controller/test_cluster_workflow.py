"""hole-punch-cluster.yml's jobs, for real, on this machine: the broker job's scripts (Redis with
a password, the cache server, the real reporter, the real submit) and one worker job's script
(a real holepunch-worker on the local engine) talk over loopback, as two runners would over
their private network; the pass ends, the worker job notices and leaves, the broker stops."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.controller.test_workflow_steps import (
    VENV_BIN,
    bash,
    free_port,
    literal_env,
    render_env,
    runner_env,
    step,
)

REPO = Path(__file__).resolve().parents[3]
ONE_TEST = "rust-v0.57 x go-v0.51 (tcp, noise, yamux"
WORKFLOW = "hole-punch-cluster.yml"


def test_cluster_workflow_runs_a_pass_across_its_jobs(tmp_path: Path) -> None:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine")
    password, port = "e2e-Broker-password.0123", free_port()
    out = tmp_path / "out"
    cache = Path.home() / ".cache" / "holepunch"
    env = runner_env(tmp_path, {
        "BROKER_HOST": "127.0.0.1", "BROKER_PORT": str(port), "CACHE_PORT": str(free_port()),
        "REDISCLI_AUTH": password, "HOLEPUNCH_BROKER": f"redis://:{password}@127.0.0.1:{port}/0",
        "PASS_KEY": "holepunch:ci:e2e-1", "HOLEPUNCH_CACHE": str(cache),
        "HOLEPUNCH_OUTPUT": str(out)}, [VENV_BIN])
    env["HOLEPUNCH_IMAGE_SOURCE"] = f"http://127.0.0.1:{env['CACHE_PORT']}"
    worker = None
    stop = next(s for s in _steps("broker") if s.get("name", "").startswith("Stop the broker"))
    try:
        started = bash(step(WORKFLOW, "broker", "broker")["run"], env, REPO, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        found = step(WORKFLOW, "worker", "worker")
        worker = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", found["run"]],
            env={**env, **literal_env(found), "WORKER_NAME": "ci-1-e2e", "POLL_SECONDS": "1"},
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)

        submit = step(WORKFLOW, "pass", "broker")
        inputs = {"use_custom_filter": True, "test_filter": ONE_TEST,
                  "use_custom_ignore": True, "test_ignore": ""}
        ran = bash(submit["run"], {**env, **render_env(submit["env"], inputs, "workflow_dispatch")},
                   REPO, timeout=900)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

        end = step(WORKFLOW, "end", "broker")
        ended = bash(end["run"], {**env, "PASS_OUTCOME": "success", "HOSTS": "1"}, REPO, timeout=240)
        assert ended.returncode == 0, ended.stderr
        assert "1 of 1 hosts stopped their workers" in ended.stdout
        worker_log, _ = worker.communicate(timeout=240)
        assert worker.returncode == 0, worker_log[-3000:]
        assert "worker ci-1-e2e stopped: pass ended (success)" in worker_log

        results = yaml.safe_load((out / "results.yaml").read_text())
        assert [(t["name"], t["status"], t["host"]) for t in results["tests"]] == [
            ("rust-v0.57 x go-v0.51 (tcp, noise, yamux)", "pass", "ci-1-e2e")]
        zipped = bash(step(WORKFLOW, "zip", "broker")["run"], env, REPO, timeout=60)
        assert zipped.returncode == 0, zipped.stdout + zipped.stderr
        outputs = (tmp_path / "github-output").read_text()
        assert f"path={cache}/test-passes/{results['metadata']['testPass']}.zip" in outputs
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)  # the job and its holepunch-worker: warm shutdown
            worker.wait(timeout=180)
        bash(stop["run"], env, REPO, timeout=120)
    left = subprocess.run(["docker", "ps", "-a", "--filter", "label=holepunch.host=ci-1-e2e",
                           "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
    assert left == []


def _steps(job: str) -> list[dict]:
    from tests.controller.test_workflows import WORKFLOWS, load_workflow
    return load_workflow(WORKFLOWS / WORKFLOW)["jobs"][job]["steps"]
