"""A test's teardown, taken off its critical path: one removal at a time in the background.

Once a test's logs, verdict and evidence are read, nothing in its record depends on its
containers and networks being gone; their removal (a kill and a removal per container, then the
networks, about a second with four tests at once) can run while the process starts its next test.
Bounded to one pending teardown per process: handing over the next one waits for the previous,
so removals never pile up behind a faster stream of tests. The test's LAN lease is released only
once its networks are gone (the caller's `then`), so no later test is handed subnets a network
still holds. The worker process joins the pending one before it exits (worker.cli); a process
that dies first leaves labelled containers the next start (or the watchdog) reaps.

A teardown also waits, at most DEFER_MAX_S, while a test on this host is starting its containers
(`Starting`: a file per such test in the run directory): its kills and removals are engine work
that would slow those starts, and run as well while the tests are in their run (mostly waiting on
the network). Handing over the next teardown, or the process's exit, ends the wait at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cluster.lifetime import pid_alive
from worker.locks import run_dir

log = logging.getLogger(__name__)

BACKGROUND = "background teardown"  # the log line's marker: "background teardown <test>: 0.912 s"


DEFER_MAX_S = 3.0   # the longest a teardown waits for the host's starting tests
POLL_S = 0.05


class Starting:
    """The tests on this host that are starting their containers: a file each under the run
    directory (`<pid>-<thread>`), from before their project is made until their clients run."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory

    @property
    def directory(self) -> Path:
        path = self._directory or run_dir() / "starting"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def begin(self) -> Callable[[], None]:
        """Mark this test as starting; returns the call that ends the mark (idempotent)."""
        path = self.directory / f"{os.getpid()}-{threading.get_ident()}"
        path.touch()
        return lambda: path.unlink(missing_ok=True)

    def quiet(self) -> bool:
        """No live test on this host is starting (a dead process's mark is removed)."""
        for entry in self.directory.iterdir():
            pid = entry.name.partition("-")[0]
            if pid.isdigit() and pid_alive(int(pid)):
                return False
            entry.unlink(missing_ok=True)
        return True


class Teardowns:
    """This process's pending teardown, if any."""

    def __init__(self, starting: Starting | None = None, defer_s: float = DEFER_MAX_S) -> None:
        self._pending: threading.Thread | None = None
        self._hurry = threading.Event()
        self._lock = threading.Lock()
        self.starting = starting
        self.defer_s = defer_s

    def hand_over(self, name: str, work: Callable[[], None]) -> float:
        """Run `work` in the background once the previous teardown has finished; returns the
        seconds spent waiting for that one (the caller's share of it)."""
        with self._lock:
            waited = self._join()
            self._hurry = threading.Event()
            thread = threading.Thread(target=self._run, args=(name, work, self._hurry),
                                      daemon=True, name=f"teardown {name}")
            self._pending = thread
            thread.start()
            return waited

    def join(self) -> float:
        """Wait for the pending teardown; the seconds waited."""
        with self._lock:
            return self._join()

    def begin_start(self) -> Callable[[], None]:
        """Mark a test of this process as starting (teardowns wait for it); ends with the call
        returned."""
        return self.starting.begin() if self.starting is not None else (lambda: None)

    @property
    def pending(self) -> bool:
        thread = self._pending
        return thread is not None and thread.is_alive()

    def _join(self) -> float:
        began = time.monotonic()
        self._hurry.set()  # a teardown still waiting for starting tests goes now
        if self._pending is not None:
            self._pending.join()
            self._pending = None
        return time.monotonic() - began

    def _run(self, name: str, work: Callable[[], None], hurry: threading.Event) -> None:
        deferred = self._defer(hurry)
        began = time.monotonic()
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - nobody waits for this thread to raise
            log.error("%s: teardown failed (holepunch-worker --cleanup or the next start "
                      "removes what is left by its labels): %s", name, exc)
        log.info("%s %s: %.3f s (deferred %.3f s)", BACKGROUND, name, time.monotonic() - began,
                 deferred)

    def _defer(self, hurry: threading.Event) -> float:
        """Wait while a test on this host starts, at most `defer_s`; the seconds waited."""
        began = time.monotonic()
        if self.starting is None:
            return 0.0
        while time.monotonic() - began < self.defer_s and not hurry.is_set():
            try:
                if self.starting.quiet():
                    break
            except OSError:
                break  # no run directory to look at: do not wait
            hurry.wait(POLL_S)
        return time.monotonic() - began


STARTING = Starting()  # this host's, in the run directory
PROCESS = Teardowns(STARTING)  # the worker process's own; its tasks run one at a time
