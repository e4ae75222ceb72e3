"""The progress lines in a test's merged log, and the step a failed test stopped at."""

from worker.steps import steps_reached, stopped_at

LOG = """\
listener_router | router: ready
listener        | 12:00:01.000 connected to the relay
listener        | holepunch-step: relay-reserved
dialer_router   | holepunch-step: ping
dialer          | holepunch-step: relayed-connection
dialer          | 2026-12-03T12:00:02Z INFO holepunch-step: dcutr-started
dialer          | holepunch-step: relayed-connection
dialer          | holepunch-step: made-up
dialer          | error: no direct connection
"""


def test_steps_are_read_from_the_clients_lines_only_once_each_in_order() -> None:
    # the router's line is not a client's, an unknown name is ignored, a repeat counted once
    assert steps_reached(LOG) == ["relay-reserved", "relayed-connection", "dcutr-started"]


def test_a_failed_test_stopped_at_the_step_after_the_last_one_reached() -> None:
    assert stopped_at(LOG) == "direct-connection"
    assert stopped_at(LOG + "dialer          | holepunch-step: direct-connection\n") == "ping"


def test_a_log_without_progress_lines_says_nothing() -> None:
    assert stopped_at("dialer | error: boom\nlistener | up\n") is None
