"""The progress lines in a test's log: which steps the dialer and the listener reached.

The log is worker.project's merge of every service's output, each line led by its service
(`dialer   | ...`); a client reports a step with `holepunch-step: NAME` on stderr
(impl/README.md). Only the two clients' lines count: a router's output never moves a test on.
"""

from __future__ import annotations

import re

from cluster.progress import STEP_PREFIX, STEPS, failed_step

_LINE = re.compile(rf"^(?:dialer|listener)\s*\| .*?{re.escape(STEP_PREFIX)}\s*([a-z-]+)\s*$")


def steps_reached(log: str) -> list[str]:
    """The known steps the clients reported, each once, in the order of the log."""
    reached: dict[str, None] = {}
    for line in log.splitlines():
        match = _LINE.match(line)
        if match and match.group(1) in STEPS:
            reached.setdefault(match.group(1))
    return list(reached)


def stopped_at(log: str) -> str | None:
    """The step a failed test stopped at (cluster.progress.failed_step), from its log."""
    return failed_step(steps_reached(log))
