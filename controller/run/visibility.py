"""A per-test timeout the broker's visibility timeout cannot cover is refused before the pass.

kombu's Redis transport hands an unacknowledged test to another consumer once it is older than
the visibility timeout, and every consumer of one broker applies its own value to every message
(the smallest wins). A test allowed to run longer than that is started twice while it runs. The
consumers' values are read from their configuration (Celery's `inspect conf`), so the check
holds whatever started them: `cluster up`, the multi-machine guide, a CI job.
"""

from __future__ import annotations

from cluster.celeryconfig import TASK_OVERHEAD_SECONDS
from cluster.errors import UsageError

INSPECT_WAIT_S = 2.0


def needed_visibility(timeout: int) -> int:
    """The least visibility timeout a test of `timeout` seconds needs: the test, plus image
    fetch and compose up and down."""
    return timeout + TASK_OVERHEAD_SECONDS


def consumer_visibilities(replies: dict[str, dict]) -> dict[str, int]:
    """node -> its broker visibility timeout, from `inspect conf` replies."""
    found = {}
    for node, conf in (replies or {}).items():
        options = (conf or {}).get("broker_transport_options") or {}
        value = options.get("visibility_timeout") if isinstance(options, dict) else None
        if isinstance(value, (int, float)):
            found[node] = int(value)
    return found


def refusal(timeout: int, visibilities: dict[str, int]) -> str | None:
    """Why `--timeout` cannot run on these consumers, with the numbers; None when it can."""
    need = needed_visibility(timeout)
    short = {node: value for node, value in visibilities.items() if value < need}
    if not short:
        return None
    lowest = min(short.values())
    nodes = ", ".join(f"{node} has {value} s" for node, value in sorted(short.items()))
    most = lowest - TASK_OVERHEAD_SECONDS
    instead = f"--timeout {most} or less" if most >= 1 else "a restart of those consumers"
    return (f"{timeout} s per test needs a broker visibility timeout of at least {need} s (the "
            f"test plus {TASK_OVERHEAD_SECONDS} s for images and compose up and down), or a "
            f"running test is handed to a second host; {nodes}. Restart them with "
            f"--max-test-timeout {timeout} (or --visibility-timeout {need}), or use {instead}")


def check_visibility(app, timeout: int, wait: float = INSPECT_WAIT_S) -> dict[str, int]:
    """Raise UsageError (exit 2) when a consumer of the broker would re-queue a running test;
    the consumers' values otherwise (none when none answered: nothing to check yet)."""
    visibilities = consumer_visibilities(app.control.inspect(timeout=wait).conf() or {})
    problem = refusal(timeout, visibilities)
    if problem:
        raise UsageError("--timeout", problem)
    return visibilities
