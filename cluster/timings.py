"""What a test's timings mean: the median of its RTT samples, and whether its RTT fits the model.

Pure functions; the model's figures have their one home in cluster.network.
"""

from __future__ import annotations

from collections.abc import Sequence

from cluster.network import DIRECT_RTT_MS, RTT_ANOMALY_SHARE

# A client reports at least this many pings over the direct connection (impl/README.md).
MIN_RTT_SAMPLES = 3
# And no more than this many are kept in a record.
MAX_RTT_SAMPLES = 100


def median(samples: Sequence[float]) -> float:
    """The middle sample (the mean of the two middle ones for an even count)."""
    if not samples:
        raise ValueError("the median of no samples")
    ordered = sorted(samples)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def rtt_anomaly(rtt_ms: float | None, model_ms: float = DIRECT_RTT_MS,
                share: float = RTT_ANOMALY_SHARE) -> str | None:
    """Why a passing test's RTT does not fit the model (more than `share` away from it), or
    None when it fits or there is no RTT."""
    if rtt_ms is None:
        return None
    off = (rtt_ms - model_ms) / model_ms
    if abs(off) <= share:
        return None
    side = "above" if off > 0 else "below"
    return (f"RTT anomaly: {rtt_ms:.0f} ms is {abs(off) * 100:.0f} % {side} the model's "
            f"{model_ms:.0f} ms direct path (tolerance {share * 100:.0f} %)")
