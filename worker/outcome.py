"""What a dialer's run means: a pure reading of its exit code and stdout.

The contract (impl/README.md): the dialer's last stdout line is `{"rtt_to_holepunched_peer_millis": N}`.
Upstream runners took the last line too, so anything printed after it (or instead of it) is a failure,
even if an RTT-looking line appears earlier.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from cluster.timings import MAX_RTT_SAMPLES

RTT_KEY = "rtt_to_holepunched_peer_millis"
# Optional beside it (impl/README.md): from the dial of the relayed address to the direct
# connection, and every ping over it (RTT_KEY is then their median).
TIME_TO_DIRECT_KEY = "time_to_direct_ms"
SAMPLES_KEY = "rtt_samples_millis"


@dataclass(frozen=True)
class Outcome:
    """Exactly one of `rtt_ms` (the test passed) or `reason` (why it failed) is set."""

    rtt_ms: float | None = None
    reason: str | None = None
    time_to_direct_ms: float | None = None
    rtt_samples_ms: tuple[float, ...] | None = None
    # Optional fields that were there but unreadable: the test still passes on its RTT.
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.rtt_ms is not None


def parse_dialer_stdout(stdout: str) -> Outcome:
    """The RTT from the dialer's last non-empty stdout line, or why there is none."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return Outcome(reason="dialer printed nothing on stdout")
    last = lines[-1]
    try:
        value = json.loads(last)
    except ValueError:
        earlier = any(RTT_KEY in line for line in lines[:-1])
        hint = f" (an earlier line had {RTT_KEY}, but it must be last)" if earlier else ""
        return Outcome(reason=f"last stdout line is not JSON: {_clip(last)}{hint}")
    if not isinstance(value, dict) or RTT_KEY not in value:
        return Outcome(reason=f"last stdout line has no {RTT_KEY}: {_clip(last)}")
    rtt = value[RTT_KEY]
    # bool is an int in Python, and JSON true is not a duration.
    if isinstance(rtt, bool) or not isinstance(rtt, (int, float)):
        return Outcome(reason=f"{RTT_KEY} is not a number: {rtt!r}")
    if not math.isfinite(rtt) or rtt < 0:
        return Outcome(reason=f"{RTT_KEY} must be a finite number >= 0, got {rtt!r}")
    return Outcome(rtt_ms=float(rtt), **_timings(value))


def _duration(value: object) -> float | None:
    """A finite number >= 0 of milliseconds, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _timings(line: dict) -> dict:
    """The optional timings of a result line. An image that prints only the RTT passes as it
    always did; a malformed optional field is left out with a note, never a failure."""
    found: dict = {}
    notes = []
    if TIME_TO_DIRECT_KEY in line:
        found["time_to_direct_ms"] = _duration(line[TIME_TO_DIRECT_KEY])
        if found["time_to_direct_ms"] is None:
            notes.append(f"{TIME_TO_DIRECT_KEY} is not a number of ms >= 0: "
                         f"{_clip(repr(line[TIME_TO_DIRECT_KEY]))}")
    if SAMPLES_KEY in line:
        raw = line[SAMPLES_KEY]
        samples = [_duration(item) for item in raw] if isinstance(raw, list) else [None]
        if samples and None not in samples and len(samples) <= MAX_RTT_SAMPLES:
            found["rtt_samples_ms"] = tuple(samples)
        else:
            notes.append(f"{SAMPLES_KEY} is not a list of 1 to {MAX_RTT_SAMPLES} numbers of "
                         f"ms >= 0: {_clip(repr(raw))}")
    return {**found, "notes": tuple(notes)}


def outcome_of(exit_code: int, stdout: str) -> Outcome:
    """A test passes only when the dialer exited 0 and its last stdout line carries the RTT."""
    parsed = parse_dialer_stdout(stdout)
    if exit_code != 0:
        detail = f"; {parsed.reason}" if parsed.reason else " (after printing an RTT line)"
        return Outcome(reason=f"dialer exited {exit_code}{detail}")
    return parsed


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
