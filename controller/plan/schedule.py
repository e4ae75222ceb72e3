"""In which order a pass's tests are enqueued, and how long each may run (pure).

Tests expected to fail (known-failures) go after the others: the verdicts that matter arrive
first, and the short tail of known failures runs at the end, each under its own, shorter
timeout (`--known-failure-timeout`), since it is not expected to pass at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from cluster.models import TestCase


def run_order(tests: Iterable[TestCase]) -> list[TestCase]:
    """The tests expected to pass first, then the known failures, each group in matrix order."""
    tests = list(tests)
    return [t for t in tests if not t.expected_failure] + [t for t in tests if t.expected_failure]


def timeout_for(test: TestCase, timeout: int, known_failure_timeout: int | None) -> int:
    """Seconds `test` may run: `timeout`, or for a known failure the shorter of it and
    `known_failure_timeout` (None: no separate timeout)."""
    if test.expected_failure and known_failure_timeout is not None:
        return min(timeout, known_failure_timeout)
    return timeout
