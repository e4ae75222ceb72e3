"""The steps of a hole punch, as the clients report them, and the step a failed test stopped at.

Dialer and listener print `holepunch-step: NAME` on stderr when they reach a step
(impl/README.md); the worker reads those lines from the test's log.
"""

from __future__ import annotations

from collections.abc import Iterable

STEP_PREFIX = "holepunch-step:"
# In the order a test reaches them; `dcutr-started` only where the library tells.
STEPS: tuple[str, ...] = ("relay-reserved", "relayed-connection", "dcutr-started",
                          "direct-connection", "ping")
# Every step was reached, yet the dialer did not print a valid result line.
RESULT_STEP = "result"
FAILED_STEPS: tuple[str, ...] = (*STEPS, RESULT_STEP)
# What each step means, for the reports.
STEP_WORDS: dict[str, str] = {
    "relay-reserved": "relay reservation (listener)",
    "relayed-connection": "relayed connection (dialer)",
    "dcutr-started": "DCUtR sync",
    "direct-connection": "direct connection",
    "ping": "ping over the direct connection",
    RESULT_STEP: "result line",
}


def failed_step(reached: Iterable[str]) -> str | None:
    """The step after the furthest one reached: where the test stopped. None when no step was
    reported at all (an image that prints no progress lines: nothing can be told)."""
    furthest = max((STEPS.index(step) for step in reached if step in STEPS), default=None)
    if furthest is None:
        return None
    return FAILED_STEPS[furthest + 1]
