"""The cluster of compose.cluster.yml, end to end: a pass spread over two Docker-in-Docker hosts,
a host killed mid-pass, a host rejoining, a broker restart, two passes at once, Flower, no
secret served or shown, and outputs written where the user asked.

Run: `.venv/bin/python -m pytest tests/e2e/cluster -v` (root, Docker engine, images built).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from tests.e2e.cluster.harness import (
    BROKER_PORT,
    CACHE_PORT,
    CONTROLLER,
    FAST,
    FAST_NAMES,
    FLOWER_PORT,
    HOSTS,
    REPO,
    SECRETS,
    broker_url,
    container,
    flower_auth,
    ping,
    results,
    submit,
    submit_args,
)


def _records(out: Path) -> list[dict]:
    return results(out)["tests"]


def test_pass_spreads_over_both_hosts_and_matches_one_host(cluster, out_dir) -> None:
    run = submit(out_dir / "cluster", FAST)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    records = _records(out_dir / "cluster")
    assert sorted(r["name"] for r in records) == FAST_NAMES
    assert {r["host"] for r in records} == set(HOSTS), "both worker hosts ran tests"
    # The same matrix on one host (the embedded default on this machine's own engine).
    single = subprocess.run([CONTROLLER, "submit", "--root", str(REPO), "-o", str(out_dir / "single"),
                             "--test-filter", FAST, "--test-ignore", ""],
                            capture_output=True, text=True, timeout=900, cwd=REPO)
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    on_one = {r["name"]: r["status"] for r in _records(out_dir / "single")}
    on_two = {r["name"]: r["status"] for r in records}
    assert on_one == on_two


def _test_containers(host: str, running_only: bool = False) -> list[str]:
    """Test containers on the host's own engine; not the next tests' routers in standby
    (worker.warmrouters: each task process keeps a set for its next test)."""
    listing = subprocess.run(["docker", "exec", container(host), "docker", "ps",
                              *([] if running_only else ["-a"]), "--filter",
                              "label=holepunch.role=test", "--format", "{{.Names}}"],
                             capture_output=True, text=True)
    return [name for name in listing.stdout.split() if not name.startswith("hp-warm-")]


def _tests_running_on(host: str) -> list[str]:
    """The dialers the host's own engine runs now."""
    return [name for name in _test_containers(host, running_only=True) if name.endswith("_dialer_1")]


def test_killed_host_loses_no_test_and_rejoins(cluster, out_dir) -> None:
    wanted = (FAST + "|rust-v0.57 x rust-v0.57 (quic|go-v0.51 x go-v0.51 (quic"
              "|rust-v0.57 x go-v0.51 (quic|go-v0.51 x rust-v0.57 (quic")
    proc = subprocess.Popen(submit_args(out_dir / "killed", wanted, "--deadline", "600"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while not _tests_running_on("worker-b"):
            assert proc.poll() is None and time.monotonic() < deadline, "worker-b never ran a test"
            time.sleep(0.5)
        killed = subprocess.run(["docker", "kill", container("worker-b")], capture_output=True, text=True)
        assert killed.returncode == 0, killed.stderr
        output, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-4000:]
    records = _records(out_dir / "killed")
    names = [r["name"] for r in records]
    assert len(names) == len(set(names)) == 8, "exactly one record per test"
    assert all(r["status"] == "pass" for r in records), records
    assert results(out_dir / "killed")["metadata"]["partial"] is False

    # Back again: it rejoins the cluster and takes work.
    started = subprocess.run(["docker", "start", container("worker-b")], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    assert ping("holepunch@worker-b", timeout=180), "worker-b did not rejoin"
    again = submit(out_dir / "rejoined", FAST)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "worker-b" in {r["host"] for r in _records(out_dir / "rejoined")}


def test_broker_restart_mid_pass_completes_or_fails_loudly(cluster, out_dir) -> None:
    proc = subprocess.Popen(submit_args(out_dir / "restart", FAST, "--deadline", "300"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while not any(_tests_running_on(host) for host in HOSTS):
            assert proc.poll() is None and time.monotonic() < deadline, "no test started"
            time.sleep(0.5)
        restarted = subprocess.run(["docker", "restart", "-t", "1", container("broker")],
                                   capture_output=True, text=True)
        assert restarted.returncode == 0, restarted.stderr
        # The deadline is 300 s: the submit must end by itself well before this bound.
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = results(out_dir / "restart")
    if summary["metadata"]["partial"]:
        assert proc.returncode != 0, "a partial pass must not exit 0\n" + output[-3000:]
    else:  # complete: exactly one record per test, and the exit code says how they went
        assert sorted(r["name"] for r in summary["tests"]) == FAST_NAMES, output[-3000:]
        all_passed = all(r["status"] == "pass" for r in summary["tests"])
        assert proc.returncode == (0 if all_passed else 1), output[-3000:]
    for host in HOSTS:
        assert ping(f"holepunch@{host}", timeout=120), f"{host} did not reconnect to the broker"
        # Tests Celery terminated at the connection loss tore their projects down. (A partial
        # pass may leave a test still running for a while; it must go too.)
        deadline = time.monotonic() + 120
        while _test_containers(host) and time.monotonic() < deadline:
            time.sleep(2)
        assert _test_containers(host) == [], f"{host} kept test containers"


def test_two_passes_at_once_do_not_collide(cluster, out_dir) -> None:
    first_filter = "rust-v0.57 x rust-v0.57 (tcp, noise, yamux|go-v0.51 x go-v0.51 (tcp, noise, yamux"
    second_filter = "rust-v0.57 x go-v0.51 (tcp, noise, yamux|go-v0.51 x rust-v0.57 (tcp, noise, yamux"
    procs = [subprocess.Popen(submit_args(out_dir / name, flt), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=REPO)
             for name, flt in (("first", first_filter), ("second", second_filter))]
    outputs = [proc.communicate(timeout=900)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]
    first, second = results(out_dir / "first"), results(out_dir / "second")
    assert first["metadata"]["testPass"] != second["metadata"]["testPass"]
    assert sorted(r["name"] for r in first["tests"]) == sorted(
        ["rust-v0.57 x rust-v0.57 (tcp, noise, yamux)", "go-v0.51 x go-v0.51 (tcp, noise, yamux)"])
    assert sorted(r["name"] for r in second["tests"]) == sorted(
        ["rust-v0.57 x go-v0.51 (tcp, noise, yamux)", "go-v0.51 x rust-v0.57 (tcp, noise, yamux)"])
    zips = [line.split("test pass: ", 1)[1].strip() for output in outputs
            for line in output.splitlines() if line.startswith("test pass: ")]
    assert len(zips) == 2 and zips[0] != zips[1] and all(Path(z).is_file() for z in zips)


def _flower(flower_url: str, out: Path, *mode: str) -> str:
    """Headless Chromium on Flower's tasks page (basic auth in the URL), after its scripts ran."""
    result = subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                             "--window-size=1500,800", "--virtual-time-budget=8000", *mode,
                             f"{flower_url}/tasks"], capture_output=True, text=True, timeout=120,
                            cwd=out)
    return result.stdout


def test_flower_shows_test_names_during_a_pass(cluster, out_dir) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("no chromium (apt-get install chromium)")
    user_pass = flower_auth()
    flower_url = f"http://{user_pass}@127.0.0.1:{FLOWER_PORT}"
    assert _http_status(f"http://127.0.0.1:{FLOWER_PORT}/tasks") == 401, "Flower without credentials"
    assert "tasks" not in _flower(f"http://127.0.0.1:{FLOWER_PORT}", out_dir, "--dump-dom").lower()
    proc = subprocess.Popen(submit_args(out_dir / "pass", FAST), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while not any(_tests_running_on(host) for host in HOSTS):
            assert proc.poll() is None and time.monotonic() < deadline, "no test started"
            time.sleep(0.5)
        dom = _flower(flower_url, out_dir, "--dump-dom")
        _flower(flower_url, out_dir, f"--screenshot={out_dir / 'flower-tasks.png'}")
        output, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    shown = [name for name in FAST_NAMES if name in dom]
    assert shown, "Flower's tasks page names no test:\n" + dom[-3000:]
    assert (out_dir / "flower-tasks.png").stat().st_size > 10_000


def _http_status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        import base64
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_no_secret_is_served_or_shown(cluster) -> None:
    """The cache server publishes images/ only; Redis and Flower refuse without their secrets;
    no process on this machine (the cluster's containers included) has one on its command line."""
    cache = f"http://127.0.0.1:{CACHE_PORT}"
    for path in ("/cluster/flower-auth", "/cluster/settings.json", "/cluster/", "/wheels/",
                 "/test-passes/", "/flower-auth", "/broker-url", "/redis.conf", "/broker.env",
                 "/flower.env", "/../cluster/flower-auth", "/images/../cluster/flower-auth",
                 "/%2e%2e/cluster/flower-auth"):
        assert _http_status(cache + path) == 404, path
    assert _http_status(cache + "/images/") == 200
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=BROKER_PORT, socket_timeout=5).ping()
    assert redis.Redis.from_url(broker_url(), socket_timeout=5).ping()
    assert _http_status(f"http://127.0.0.1:{FLOWER_PORT}/") == 401
    assert _http_status(f"http://127.0.0.1:{FLOWER_PORT}/", flower_auth()) == 200
    password = broker_url().split(":", 2)[2].split("@", 1)[0]
    flower_password = flower_auth().split(":", 1)[1]
    commands = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout
    assert "cluster.app flower" in commands, "ps here sees the containers' processes"
    assert password not in commands and flower_password not in commands
    for path in SECRETS.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_outputs_reach_a_folder_the_reporter_cannot_see(cluster) -> None:
    """The reporter mounts only the checkout and the cache; an attached submit writes the
    outputs itself, wherever its user asked. A detached pass cannot (the reporter would write
    them): refused before the first test, exit 2."""
    outside = Path(tempfile.mkdtemp(prefix="holepunch-e2e-outside-"))
    try:
        run = submit(outside / "x", "rust-v0.57 x go-v0.51 (tcp, noise, yamux")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "Traceback" not in run.stderr
        records = results(outside / "x")["tests"]
        assert [r["name"] for r in records] == ["rust-v0.57 x go-v0.51 (tcp, noise, yamux)"]
        assert (outside / "x" / "results.md").is_file() and (outside / "x" / "output.log").is_file()
        assert (outside / "x" / records[0]["logFile"]).is_file()
        started = time.monotonic()
        detached = submit(outside / "y", "rust-v0.57 x go-v0.51 (tcp, noise, yamux", "--detach")
        assert detached.returncode == 2, detached.stdout[-3000:] + detached.stderr[-3000:]
        assert "reporter cannot see" in detached.stderr and "submitted" not in detached.stderr
        print(f"detached refusal took {time.monotonic() - started:.1f} s")
        inside = REPO / ".test-output" / "detached-inside"
        shutil.rmtree(inside, ignore_errors=True)
        accepted = submit(inside, "rust-v0.57 x go-v0.51 (tcp, noise, yamux", "--detach")
        assert accepted.returncode == 0, accepted.stdout[-3000:] + accepted.stderr[-3000:]
        deadline = time.monotonic() + 600
        while not (inside / "results.yaml").is_file():
            assert time.monotonic() < deadline, "the reporter never wrote the detached pass"
            time.sleep(2)
        assert results(inside)["tests"][0]["status"] == "pass"
    finally:
        shutil.rmtree(outside, ignore_errors=True)
