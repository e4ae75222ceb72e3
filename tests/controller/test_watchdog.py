"""The embedded cluster's watchdog, with real processes but no Docker: a `submit` stand-in
that starts it and a long-running child, then is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from controller.run.embedded import OWNER_FILE, reclaim_folders

FAKE_SUBMIT = textwrap.dedent("""
    import subprocess, sys, time
    from cluster.lifetime import preexec_die_with_parent
    folder, cleanup_bin, mode = sys.argv[1:4]
    dog = subprocess.Popen([sys.executable, "-m", "controller.run.watchdog", str(__import__("os").getpid()),
                            "fake-host", folder, folder, cleanup_bin], stdin=subprocess.PIPE,
                           start_new_session=True)
    kw = {"preexec_fn": preexec_die_with_parent()} if mode == "pdeathsig" else {}
    child = subprocess.Popen(["sleep", "600"], start_new_session=True, **kw)
    dog.stdin.write(f"pg {child.pid}\\n".encode()); dog.stdin.flush()
    print(child.pid, dog.pid, flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (its parent, the killed submit, is gone; init reaps it soon) counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("mode", ["watchdog", "pdeathsig"])
def test_a_sigkilled_submit_takes_its_children_with_it(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "embedded"
    folder.mkdir()
    marker = tmp_path / "cleanup-ran"
    cleanup = tmp_path / "cleanup"
    cleanup.write_text(f"#!/bin/sh\necho \"$@\" > {marker}\n")
    cleanup.chmod(0o755)
    submit = subprocess.Popen([sys.executable, "-c", FAKE_SUBMIT, str(folder), str(cleanup), mode],
                              stdout=subprocess.PIPE, text=True)
    child, dog = (int(x) for x in submit.stdout.readline().split())
    try:
        time.sleep(0.5)
        assert _alive(child) and _alive(dog)
        submit.send_signal(signal.SIGKILL)
        submit.wait()
        assert _wait_dead(child, 3), "the child outlived its submit"
        assert _wait_dead(dog, 10), "the watchdog did not finish"
        assert marker.read_text().split() == ["--cleanup", "-n", "fake-host", "--cache-dir",
                                              str(folder)]
        assert not folder.exists()
    finally:
        for pid in (child, dog):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_stop_ends_the_watchdog_without_a_clean_up(tmp_path: Path) -> None:
    marker = tmp_path / "cleanup-ran"
    dog = subprocess.Popen([sys.executable, "-m", "controller.run.watchdog", str(os.getpid()),
                            "h", str(tmp_path), str(tmp_path), f"/bin/sh -c 'touch {marker}'"],
                           stdin=subprocess.PIPE)
    dog.communicate(b"pg 999999\nstop\n", timeout=10)
    assert dog.returncode == 0 and not marker.exists() and tmp_path.exists()


def test_folders_of_dead_submits_are_reclaimed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, pid in (("holepunch-embedded-dead", dead.pid), ("holepunch-embedded-live", os.getpid())):
        (tmp_path / name).mkdir()
        (tmp_path / name / OWNER_FILE).write_text(f"{pid}\n")
    assert reclaim_folders(tmp_path) == [tmp_path / "holepunch-embedded-dead"]
    assert (tmp_path / "holepunch-embedded-live").exists()
