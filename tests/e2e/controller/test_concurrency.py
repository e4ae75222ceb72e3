"""Concurrent and broken passes on the embedded default, end to end: real Docker engine, real
local Redis, real Celery worker and reporter, real libp2p images (go-v0.51, python-v0.8).

- two passes started seconds apart on one machine both complete, each with its own results;
- a SIGKILLed `submit` leaves nothing running (its watchdog), and when the watchdog dies with it
  the next run reclaims what was left;
- a test whose task process dies on every delivery is an `error` after three deliveries;
- a pass whose chord callback is lost is finished within 30 s of its last result;
- a duplicate delivery of a test still gives one record.

Run them under the shared lock: `flock /tmp/holepunch-e2e.lock .venv/bin/python -m pytest
tests/e2e/controller/test_concurrency.py -s`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import yaml

REPO = Path(__file__).resolve().parents[3]
CONTROLLER = str(Path(sys.executable).with_name("holepunch-controller"))
GO_TCP, GO_QUIC = "go-v0.51 x go-v0.51 (tcp, noise, yamux)", "go-v0.51 x go-v0.51 (quic)"
PY_TCP = "python-v0.8 x python-v0.8 (tcp, noise, yamux)"
SMALL = [GO_TCP, GO_QUIC, PY_TCP]


def engine_or_skip() -> None:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine")


class Submit:
    """`holepunch-controller submit` in the background; its output read line by line, with
    the time each line arrived."""

    def __init__(self, out: Path, tests: list[str], *args: str):
        self.out = out
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [CONTROLLER, "submit", "--root", str(REPO), "-o", str(out), "--test-filter",
             "|".join(tests), "--test-ignore", "", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        self.lines: list[tuple[float, str]] = []
        self.ended: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))
        self.proc.wait()
        self.ended = time.monotonic()

    @property
    def output(self) -> str:
        return "".join(line for _, line in self.lines)

    def wait_for(self, pattern: str, timeout: float = 600) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            assert self.ended is None, f"submit ended before {pattern!r}:\n{self.output[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} after {timeout} s:\n{self.output[-3000:]}")

    def cluster(self) -> tuple[str, str]:
        """(broker URL, worker host) of its embedded cluster."""
        found = self.wait_for(r"embedded cluster: Redis (\S+), worker (\S+)")
        return found.group(1), found.group(2)

    def finish(self, timeout: float = 900) -> int:
        deadline = time.monotonic() + timeout
        while self.ended is None:
            assert time.monotonic() < deadline, self.output[-3000:]
            time.sleep(0.2)
        return self.proc.returncode

    @property
    def wall(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def results(self) -> dict:
        return yaml.safe_load((self.out / "results.yaml").read_text())


def labelled(kind: str, *labels: str) -> list[str]:
    argv = ["docker", "ps", "-a", "--format", "{{.Names}}"] if kind == "container" else \
        ["docker", "network", "ls", "--format", "{{.Name}}"]
    for label in labels:
        argv += ["--filter", f"label={label}"]
    return subprocess.run(argv, capture_output=True, text=True).stdout.split()


def of_host(host: str) -> list[str]:
    return labelled("container", f"holepunch.host={host}") + \
        labelled("network", f"holepunch.host={host}")


def running_tests(host: str) -> list[str]:
    """The host's running test projects (not the next tests' routers in standby)."""
    return [project for project in subprocess.run(
        ["docker", "ps", "--filter", f"label=holepunch.host={host}", "--filter",
         "label=holepunch.role=test", "--format", '{{.Label "com.docker.compose.project"}}'],
        capture_output=True, text=True).stdout.split() if not project.startswith("hp-warm-")]


def wait_until(what: str, probe, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not after {timeout} s")


def processes(needle: str) -> dict[int, str]:
    """pid -> command line, for every process whose command line contains `needle`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            state = (entry / "stat").read_text().rsplit(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if needle in cmdline and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def records(results: dict) -> dict[str, dict]:
    names = [t["name"] for t in results["tests"]]
    assert len(names) == len(set(names)), f"a test has two records: {names}"
    return {t["name"]: t for t in results["tests"]}


def test_two_passes_at_once_complete_with_their_own_results(tmp_path: Path) -> None:
    engine_or_skip()
    first = Submit(tmp_path / "a", SMALL, "--workers", "2")
    _, host_a = first.cluster()
    wait_until("a test of the first pass running", lambda: running_tests(host_a), 600)
    second = Submit(tmp_path / "b", SMALL, "--workers", "2")  # its start-up meets a's tests
    apart = second.started - first.started
    codes = first.finish(), second.finish()
    _, host_b = second.cluster()
    print(f"\n[two passes] started {apart:.1f} s apart; walls {first.wall:.1f} s and "
          f"{second.wall:.1f} s; exit codes {codes}")
    assert host_a != host_b
    for submit, host in ((first, host_a), (second, host_b)):
        found = records(submit.results())
        print(f"[two passes] {host}: " + ", ".join(
            f"{name}={t['status']}" + ("" if t.get("rttMs") is None else f" {t['rttMs']:.0f} ms")
            for name, t in found.items()))
        assert set(found) == set(SMALL), submit.output[-3000:]
        assert not submit.results()["metadata"].get("partial"), submit.output[-3000:]
        for name, test in found.items():
            assert test["host"] == host, (name, test["host"], host)
            assert test["status"] == "pass", (host, name, test.get("reason"))
        assert not of_host(host), of_host(host)
    assert codes == (0, 0), first.output[-2000:] + second.output[-2000:]


def test_a_sigkilled_submit_leaves_nothing_running(tmp_path: Path) -> None:
    engine_or_skip()
    submit = Submit(tmp_path, [GO_TCP, GO_QUIC], "--workers", "2")
    broker, host = submit.cluster()
    wait_until("a test running", lambda: running_tests(host), 600)
    assert processes(host), "no embedded processes found"
    submit.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_until("the embedded worker, reporter and watchdog gone",
               lambda: not processes(host), 30)
    port = broker.rsplit(":", 1)[1].split("/")[0]
    wait_until("the embedded Redis gone", lambda: not processes(f"--port {port} "), 10)
    wait_until("the pass's containers and networks gone", lambda: not of_host(host), 60)
    print(f"\n[sigkill] everything of {host} gone {time.monotonic() - killed:.1f} s after the kill")


def test_killed_with_its_watchdog_the_next_run_reclaims_what_was_left(tmp_path: Path) -> None:
    """A cancelled CI job kills every process of the job at once: the children still end (a
    parent-death signal), and the next run removes the containers they left."""
    engine_or_skip()
    submit = Submit(tmp_path / "killed", [GO_TCP, GO_QUIC], "--workers", "2")
    _, host = submit.cluster()
    wait_until("a test running", lambda: running_tests(host), 600)
    watchdog = [pid for pid, cmd in processes(host).items() if "controller.run.watchdog" in cmd]
    assert watchdog, processes(host)
    for pid in (submit.proc.pid, *watchdog):
        os.kill(pid, signal.SIGKILL)
    wait_until("the embedded processes gone", lambda: not processes(host), 30)
    left = of_host(host)
    assert left, "nothing was left for the next run to reclaim"
    following = Submit(tmp_path / "next", [GO_TCP], "--workers", "1")
    assert following.finish() == 0, following.output[-3000:]
    assert records(following.results())[GO_TCP]["status"] == "pass"
    assert not of_host(host), f"left by the killed pass and not reclaimed: {of_host(host)}"
    print(f"\n[reclaim] the next run removed {len(left)} leftovers of {host}")


def test_a_test_whose_process_dies_on_every_delivery_is_an_error_after_three(
        tmp_path: Path) -> None:
    engine_or_skip()
    submit = Submit(tmp_path, [GO_TCP], "--workers", "1")
    _, host = submit.cluster()
    killed: set[str] = set()
    deadline = time.monotonic() + 600
    while submit.ended is None and time.monotonic() < deadline:
        fresh = [p for p in running_tests(host) if p not in killed]
        if fresh:
            found = [pid for pid, cmd in processes(f"-n {host}").items()
                     if "holepunch-worker --broker" in cmd]
            workers = [pid for pid in found if parent(pid) not in found]  # its pool shares argv
            assert len(workers) == 1, found
            for child in children(workers[0]):  # the pool's task process: SIGKILL, as the OOM killer
                os.kill(child, signal.SIGKILL)
            killed.update(fresh)
            print(f"\n[poison] killed the task process running {fresh[0]}")
            assert len(killed) <= 3, "delivered a fourth time after dying during three"
        time.sleep(0.1)
    code = submit.finish()
    record = records(submit.results())[GO_TCP]
    print(f"[poison] {len(killed)} deliveries killed; record: {record['status']}: "
          f"{record.get('reason')}; exit {code}")
    assert record["status"] == "error", record
    assert "died during 3 deliveries" in record["reason"], record
    assert len(killed) == 3
    assert code == 3, submit.output[-3000:]


def test_a_lost_chord_callback_is_finished_within_30_s(tmp_path: Path) -> None:
    engine_or_skip()
    submit = Submit(tmp_path, [GO_TCP, GO_QUIC], "--workers", "2", "--deadline", "90")
    broker, _ = submit.cluster()
    name = submit.wait_for(r"pass (\S+): \d+ tests submitted").group(1)
    store = redis.Redis.from_url(broker)
    group = json.loads(store.get(f"holepunch:pass:{name}"))["group"]
    # The chord's join state: without it no result ever triggers the callback (a lost one).
    lost = [key for key in store.scan_iter(f"*{group}.*")]
    assert lost, "no chord state found to lose"
    store.delete(*lost)
    code = submit.finish()
    stamps = [at for at, line in submit.lines if line.strip().startswith(("PASS", "FAIL"))]
    assert len(stamps) == 2, submit.output[-3000:]
    after = submit.ended - max(stamps)
    print(f"\n[lost callback] finished {after:.1f} s after the last test reported (exit {code})")
    results = submit.results()
    assert set(records(results)) == {GO_TCP, GO_QUIC}
    assert not results["metadata"].get("partial"), submit.output[-3000:]
    assert "chord callback" in (tmp_path / "output.log").read_text()
    assert after <= 30, submit.output[-3000:]
    assert code == 0, submit.output[-3000:]


def test_a_duplicate_delivery_gives_one_record(tmp_path: Path) -> None:
    engine_or_skip()
    submit = Submit(tmp_path, [GO_TCP, GO_QUIC], "--workers", "1")
    broker, _ = submit.cluster()
    submit.wait_for(r"pass (\S+): \d+ tests submitted")
    store = redis.Redis.from_url(broker)
    queued = wait_until("a test waiting in the queue",
                        lambda: store.lrange("holepunch.tests", 0, -1), 60, 0.02)
    store.rpush("holepunch.tests", queued[-1])  # the same message again: delivered twice
    seen: dict[str, int] = {}
    while submit.ended is None:
        try:
            for key in store.scan_iter("holepunch:deliveries:*"):
                seen[key.decode()] = max(seen.get(key.decode(), 0), int(store.get(key) or 0))
        except redis.RedisError:
            break
        time.sleep(0.2)
    code = submit.finish()
    results = submit.results()
    print(f"\n[duplicate] deliveries seen {seen}; exit {code}")
    assert max(seen.values()) == 2, seen
    assert set(records(results)) == {GO_TCP, GO_QUIC}
    assert not results["metadata"].get("partial")
    assert code == 0, submit.output[-3000:]
