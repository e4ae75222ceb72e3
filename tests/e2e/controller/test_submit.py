"""`holepunch-controller submit` on the embedded default: a real pass, end to end.

Real Docker engine, a real local Redis, a real Celery worker and reporter, real libp2p images.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from cluster.cache import sha256_file
from controller.images.delta import DELTA, restore_deltas
from controller.images.solid import restore_solid

REPO = Path(__file__).resolve().parents[3]
CONTROLLER = str(Path(sys.executable).with_name("holepunch-controller"))
EMBEDDED_HOST = socket.gethostname() + "-embedded"  # + "-<submit's pid>": a host per submit
SMALL = ("rust-v0.57 x rust-v0.57 (tcp, noise, yamux|go-v0.51 x go-v0.51 (tcp, noise, yamux"
         "|rust-v0.57 x go-v0.51 (tcp, noise, yamux")


def engine_or_skip() -> None:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine")


def submit(out: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([CONTROLLER, "submit", "--root", str(REPO), "-o", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def embedded_labelled(kind: str, *filters: str) -> list[str]:
    """Names of containers (`ps -a`) or networks (`network ls`) of any embedded host here."""
    argv = ["docker", *(["ps", "-a"] if kind == "container" else ["network", "ls"])]
    for extra in filters:
        argv += ["--filter", extra]
    lines = subprocess.run([*argv, "--filter", "label=holepunch.host", "--format",
                            ('{{.Names}}' if kind == "container" else '{{.Name}}')
                            + ' {{.Label "holepunch.host"}}'],
                           capture_output=True, text=True).stdout.splitlines()
    return [line.split()[0] for line in lines
            if len(line.split()) == 2 and line.split()[1].startswith(EMBEDDED_HOST + "-")]


def leftovers() -> list[str]:
    return embedded_labelled("container") + embedded_labelled("network")


def embedded_redis_running() -> bool:
    return subprocess.run(["pgrep", "-f", "redis-server .*--dir /tmp/holepunch-embedded-"],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def small_pass(tmp_path_factory):
    engine_or_skip()
    out = tmp_path_factory.mktemp("pass")
    first = submit(out, "--test-filter", SMALL, "--test-ignore", "")
    return out, first


def test_small_pass_results_match_reality(small_pass) -> None:
    out, run = small_pass
    assert run.returncode == 0, run.stderr[-4000:]
    results = yaml.safe_load((out / "results.yaml").read_text())
    names = sorted(t["name"] for t in results["tests"])
    assert names == sorted(["rust-v0.57 x rust-v0.57 (tcp, noise, yamux)",
                            "go-v0.51 x go-v0.51 (tcp, noise, yamux)",
                            "rust-v0.57 x go-v0.51 (tcp, noise, yamux)"])
    assert results["metadata"]["partial"] is False
    for test in results["tests"]:
        assert test["status"] == "pass" and test["rttMs"] >= 180, test
        assert test["host"].startswith(EMBEDDED_HOST + "-")
        assert (out / test["logFile"]).read_text().strip()
    assert "## Transport: tcp, noise, yamux" in (out / "results.md").read_text()
    zip_line = next(line for line in run.stderr.splitlines() if line.startswith("test pass: "))
    with zipfile.ZipFile(zip_line.removeprefix("test pass: ").strip()) as archive:
        listed = archive.namelist()
    assert any(name.endswith("/re-run.sh") for name in listed)
    assert any("/snapshots/" in name for name in listed)
    assert not leftovers() and not embedded_redis_running()


def test_snapshots_travel_solid_or_as_deltas_and_restore_exactly(small_pass, tmp_path: Path) -> None:
    """Each whole snapshot travels as one zstd stream; rust-v0.57 vendors what the relay does,
    so it travels as a zstd patch of the relay's (controller.images.delta). The unzipped pass
    puts every zip back together byte for byte, solid ones first (what re-run.sh does before
    it builds)."""
    out, run = small_pass
    zip_line = next(line for line in run.stderr.splitlines() if line.startswith("test pass: "))
    with zipfile.ZipFile(zip_line.removeprefix("test pass: ").strip()) as archive:
        archive.extractall(tmp_path)
    snapshots = next(tmp_path.iterdir()) / "snapshots"
    solid = sorted(p.name for p in snapshots.glob("*.tar.xz"))
    deltas = sorted(p.name for p in snapshots.glob(f"*{DELTA}"))
    assert solid and len(deltas) == 1 and not list(snapshots.glob("*[0-9a-f].zip")), \
        sorted(p.name for p in snapshots.iterdir())
    assert deltas[0].endswith(".delta.zst") and (snapshots / deltas[0]).stat().st_size < 1_000_000
    wholes = restore_solid(snapshots)
    assert sorted(whole.name.removesuffix(".zip") + ".tar.xz" for whole in wholes) == solid
    patched = restore_deltas(snapshots)
    assert sorted(whole.name.removesuffix(".zip") + DELTA for whole, _ in patched) == deltas
    assert all(whole.byte_for_byte for whole in [*wholes, *(p for p, _ in patched)])
    cache = Path(os.environ.get("HOLEPUNCH_CACHE") or Path.home() / ".cache" / "holepunch")
    for name in [*(whole.name for whole, _ in patched), *(whole.name for whole in wholes)]:
        assert sha256_file(snapshots / name) == sha256_file(cache / "snapshots" / name)


def test_second_submit_rebuilds_nothing(small_pass, tmp_path: Path) -> None:
    again = submit(tmp_path, "--test-filter", "rust-v0.57 x rust-v0.57 (tcp, noise, yamux",
                   "--test-ignore", "")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "building from" not in again.stderr and "vendoring" not in again.stderr
    # one line per image (controller.images.progress): router, relay, the one implementation
    assert again.stderr.count(" up to date") == 3, again.stderr[-2000:]
    assert "Traceback" not in again.stderr


def test_bad_input_exits_2_before_anything_runs(tmp_path: Path) -> None:
    run = submit(tmp_path, "--test-filter", "no-such-implementation")
    assert run.returncode == 2 and "matches no test" in run.stderr
    assert not (tmp_path / "results.yaml").exists()


def _interruptible() -> None:
    """Ctrl-C reaches the child even when this run inherited SIGINT ignored (a job a script
    started with `&` ignores it, and Python then keeps ignoring it: as nohup'd CI did)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_leaves_nothing_and_a_partial_result(tmp_path: Path) -> None:
    engine_or_skip()
    proc = subprocess.Popen([CONTROLLER, "submit", "--root", str(REPO), "-o", str(tmp_path),
                             "--test-filter", "rust-v0.57 x rust-v0.57|go-v0.51 x go-v0.51|"
                             "rust-v0.57 x go-v0.51|go-v0.51 x rust-v0.57", "--test-ignore", "",
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=REPO, preexec_fn=_interruptible)
    lines: list[str] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith(("PASS", "FAIL")):  # one test done, the rest still queued
            break
    assert any("tests submitted" in line for line in lines), "".join(lines)[-3000:]
    assert proc.poll() is None, "the pass ended before one test was done:\n" + "".join(lines)[-3000:]
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "Traceback" not in rest, rest[-3000:]
    results = yaml.safe_load((tmp_path / "results.yaml").read_text())
    assert results["metadata"]["partial"] is True and results["metadata"]["missingTests"]
    assert not leftovers(), leftovers()
    assert not embedded_redis_running()


def test_dead_embedded_worker_stops_the_pass_as_partial_with_exit_3(tmp_path: Path) -> None:
    """The worker killed mid-pass: submit notices at once (no waiting for the deadline), writes
    what finished as partial, exits 3 (infrastructure) and leaves nothing running."""
    engine_or_skip()
    proc = subprocess.Popen([CONTROLLER, "submit", "--root", str(REPO), "-o", str(tmp_path),
                             "--test-filter", SMALL, "--test-ignore", "", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    pattern = f"holepunch-worker --broker redis://127.0.0.1:[0-9]+/0 -n {EMBEDDED_HOST}"
    deadline = time.monotonic() + 600
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "no test started"
        running = [name for name in embedded_labelled("container", "label=holepunch.role=test",
                                                      "status=running")
                   if not name.startswith("hp-warm-")]  # a test's, not routers in standby
        if running:
            break
        time.sleep(0.2)
    killed = subprocess.run(["pkill", "-KILL", "-f", pattern], capture_output=True)
    assert killed.returncode == 0, "the embedded worker was not found"
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 3, output[-3000:]
    assert "embedded worker exited" in output and "Traceback" not in output, output[-3000:]
    results = yaml.safe_load((tmp_path / "results.yaml").read_text())
    assert results["metadata"]["partial"] is True and results["metadata"]["missingTests"]
    assert not leftovers(), leftovers()
    assert not embedded_redis_running()
