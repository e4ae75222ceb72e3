"""Where a test's time goes on the worker, phase by phase, for the worker's log.

One line per test (`timings <test>: images=0.010 network=0.004 ... total=6.512`) at INFO:
bench/overhead.py reads it to say where the harness's share of each test goes. Only
monotonic clock reads: nothing is waited for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

TIMINGS = "timings"  # the log line's marker


class Phases:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - began)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def line(self, test_name: str) -> str:
        parts = [f"{name}={value:.3f}" for name, value in self.seconds.items()]
        return f"{TIMINGS} {test_name}: {' '.join(parts)} total={time.monotonic() - self.started:.3f}"


def parse_line(text: str) -> tuple[str, dict[str, float]] | None:
    """(test name, phase -> seconds) from a worker log line, or None if it holds none."""
    marker = f"{TIMINGS} "
    at = text.find(marker)
    if at < 0:
        return None
    name, _, rest = text[at + len(marker):].rpartition(": ")
    try:
        return name, {key: float(value) for key, _, value in
                      (part.partition("=") for part in rest.split())}
    except ValueError:
        return None

