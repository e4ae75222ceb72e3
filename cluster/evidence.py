"""What a test's evidence is and which tests keep it (standard library only: the CLI reads it)."""

from __future__ import annotations

from enum import Enum

# Each router keeps at most this much of its public side's traffic (whole packets), and a key
# log is cut at it too: a failed test's evidence travels through the broker like its log.
CAPTURE_LIMIT = 1024 * 1024


class CaptureMode(str, Enum):
    """Which tests keep their captures (`submit --capture`)."""

    FAILURES = "failures"  # failed (known failures too), flaky and unexpectedly passing tests
    ALL = "all"
    NONE = "none"          # nothing captured at all
