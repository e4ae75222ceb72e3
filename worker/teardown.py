"""A test's teardown, taken off its critical path: one removal at a time in the background.

Once a test's logs, verdict and evidence are read, nothing in its record depends on its
containers and networks being gone; their removal (a kill and a removal per container, then the
networks, about a second with four tests at once) can run while the process starts its next test.
Bounded to one pending teardown per process: handing over the next one waits for the previous,
so removals never pile up behind a faster stream of tests. The test's LAN lease is released only
once its networks are gone (the caller's `then`), so no later test is handed subnets a network
still holds. The worker process joins the pending one before it exits (worker.cli); a process
that dies first leaves labelled containers the next start (or the watchdog) reaps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

BACKGROUND = "background teardown"  # the log line's marker: "background teardown <test>: 0.912 s"


class Teardowns:
    """This process's pending teardown, if any."""

    def __init__(self) -> None:
        self._pending: threading.Thread | None = None
        self._lock = threading.Lock()

    def hand_over(self, name: str, work: Callable[[], None]) -> float:
        """Run `work` in the background once the previous teardown has finished; returns the
        seconds spent waiting for that one (the caller's share of it)."""
        with self._lock:
            waited = self._join()
            thread = threading.Thread(target=self._run, args=(name, work), daemon=True,
                                      name=f"teardown {name}")
            self._pending = thread
            thread.start()
            return waited

    def join(self) -> float:
        """Wait for the pending teardown; the seconds waited."""
        with self._lock:
            return self._join()

    @property
    def pending(self) -> bool:
        thread = self._pending
        return thread is not None and thread.is_alive()

    def _join(self) -> float:
        began = time.monotonic()
        if self._pending is not None:
            self._pending.join()
            self._pending = None
        return time.monotonic() - began

    @staticmethod
    def _run(name: str, work: Callable[[], None]) -> None:
        began = time.monotonic()
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - nobody waits for this thread to raise
            log.error("%s: teardown failed (holepunch-worker --cleanup or the next start "
                      "removes what is left by its labels): %s", name, exc)
        log.info("%s %s: %.3f s", BACKGROUND, name, time.monotonic() - began)


PROCESS = Teardowns()  # the worker process's own; its tasks run one at a time
