"""Timings: the median of a client's RTT samples, an RTT anomaly against the model, the step a
failed test stopped at."""

import pytest

from cluster.network import DIRECT_RTT_MS, RTT_ANOMALY_SHARE
from cluster.progress import FAILED_STEPS, STEPS, failed_step
from cluster.timings import median, rtt_anomaly


def test_the_model_is_four_router_delays_and_ten_percent() -> None:
    assert DIRECT_RTT_MS == 200 and RTT_ANOMALY_SHARE == 0.10


@pytest.mark.parametrize("samples, expected", [
    ([201.0], 201.0), ([252.0, 201.0, 200.5], 201.0), ([200, 210, 202, 400], 206.0),
    ([1, 2, 3, 4, 5], 3)])
def test_median(samples, expected) -> None:
    assert median(samples) == expected


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        median([])


@pytest.mark.parametrize("rtt", [200.0, 201.0, 180.0, 220.0, None])
def test_an_rtt_within_ten_percent_of_the_model_is_no_anomaly(rtt) -> None:
    assert rtt_anomaly(rtt) is None


@pytest.mark.parametrize("rtt, words", [(252.0, "26 % above"), (221.0, "10 % above"),
                                        (150.0, "25 % below"), (3.0, "98 % below")])
def test_an_rtt_further_off_is_an_anomaly_that_says_how_far(rtt, words) -> None:
    anomaly = rtt_anomaly(rtt)
    assert anomaly is not None and words in anomaly and "200 ms" in anomaly


@pytest.mark.parametrize("reached, stopped", [
    ([], None),                                                         # no progress lines at all
    (["relayed-connection"], "dcutr-started"),
    (["relay-reserved"], "relayed-connection"),
    (["relay-reserved", "relayed-connection", "dcutr-started"], "direct-connection"),
    (["relay-reserved", "relayed-connection"], "dcutr-started"),         # DCUtR never told
    (["relay-reserved", "relayed-connection", "direct-connection"], "ping"),  # no dcutr line
    (list(STEPS), "result"),                                           # every step, no result
    (["direct-connection", "relay-reserved"], "ping"),                 # order of the log
    (["bogus", "relay-reserved"], "relayed-connection"),
])
def test_failed_step_is_the_step_after_the_furthest_reached(reached, stopped) -> None:
    assert failed_step(reached) == stopped
    assert stopped is None or stopped in FAILED_STEPS
