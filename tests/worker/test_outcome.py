"""outcome: the dialer's last stdout line is the result, and nothing else is."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.outcome import Outcome, outcome_of, parse_dialer_stdout

GOOD = '{"rtt_to_holepunched_peer_millis": 201}'


def test_good_line():
    assert parse_dialer_stdout(GOOD + "\n") == Outcome(rtt_ms=201.0)


def test_good_line_after_other_output_and_trailing_blank_lines():
    out = "listening\nconnected via relay\n" + GOOD + "\n\n  \n"
    assert parse_dialer_stdout(out).rtt_ms == 201.0


def test_fractional_rtt():
    assert parse_dialer_stdout('{"rtt_to_holepunched_peer_millis": 200.75}').rtt_ms == 200.75


def test_missing_output():
    result = parse_dialer_stdout("")
    assert not result.passed
    assert "nothing" in result.reason


def test_garbage():
    result = parse_dialer_stdout("panic: runtime error\x00\xff")
    assert not result.passed
    assert "not JSON" in result.reason


def test_json_line_not_last():
    result = parse_dialer_stdout(GOOD + "\nshutting down\n")
    assert not result.passed
    assert "must be last" in result.reason


def test_relayed_only_output():
    out = (
        "connected to relay /ip4/11.11.0.3/tcp/4001/p2p/12D3KooWRelay\n"
        "connection to 12D3KooWPeer is /ip4/11.11.0.3/tcp/4001/p2p/12D3KooWRelay/p2p-circuit\n"
        "hole punch failed: no direct connection\n"
    )
    result = parse_dialer_stdout(out)
    assert not result.passed
    assert result.rtt_ms is None


@pytest.mark.parametrize("line, words", [
    ('{"rtt_to_holepunched_peer_millis": -1}', ">= 0"),
    ('{"rtt_to_holepunched_peer_millis": NaN}', ">= 0"),
    ('{"rtt_to_holepunched_peer_millis": Infinity}', ">= 0"),
    ('{"rtt_to_holepunched_peer_millis": "201"}', "not a number"),
    ('{"rtt_to_holepunched_peer_millis": true}', "not a number"),
    ('{"rtt_to_holepunched_peer_millis": null}', "not a number"),
    ('{"rtt_millis": 201}', "no rtt_to_holepunched_peer_millis"),
    ("[201]", "no rtt_to_holepunched_peer_millis"),
    ("201", "no rtt_to_holepunched_peer_millis"),
])
def test_bad_values(line, words):
    result = parse_dialer_stdout(line)
    assert not result.passed
    assert words in result.reason


def test_zero_is_a_valid_rtt():
    assert parse_dialer_stdout('{"rtt_to_holepunched_peer_millis": 0}').rtt_ms == 0.0


def test_nonzero_exit_fails_even_with_an_rtt_line():
    result = outcome_of(1, GOOD)
    assert not result.passed
    assert result.reason.startswith("dialer exited 1")


def test_nonzero_exit_names_the_parse_problem_too():
    assert outcome_of(2, "").reason == "dialer exited 2; dialer printed nothing on stdout"


def test_exit_zero_without_rtt_fails():
    assert not outcome_of(0, "done\n").passed


def test_exit_zero_with_rtt_passes():
    assert outcome_of(0, GOOD) == Outcome(rtt_ms=201.0)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.lists(st.text(), max_size=5))
def test_any_prefix_with_rtt_last_passes(rtt, prefix):
    lines = [line.replace("\r", " ") for line in prefix]
    out = "\n".join(lines + [json.dumps({"rtt_to_holepunched_peer_millis": rtt})])
    assert parse_dialer_stdout(out).rtt_ms == rtt


@given(st.text())
def test_never_raises_and_always_decides(text):
    result = parse_dialer_stdout(text)
    assert (result.rtt_ms is None) != (result.reason is None)


def test_timings_beside_the_rtt_are_read() -> None:
    parsed = parse_dialer_stdout('{"rtt_to_holepunched_peer_millis": 201, "time_to_direct_ms": '
                                 '1234.5, "rtt_samples_millis": [201.2, 200.5, 252]}\n')
    assert parsed == Outcome(rtt_ms=201.0, time_to_direct_ms=1234.5,
                             rtt_samples_ms=(201.2, 200.5, 252.0))


@pytest.mark.parametrize("extra", ['"time_to_direct_ms": "soon"', '"time_to_direct_ms": -1',
                                   '"rtt_samples_millis": 201', '"rtt_samples_millis": []',
                                   '"rtt_samples_millis": [201, true]',
                                   '"rtt_samples_millis": [201, -3]'])
def test_a_malformed_timing_is_a_note_and_the_test_still_passes(extra) -> None:
    parsed = parse_dialer_stdout('{"rtt_to_holepunched_peer_millis": 201, ' + extra + "}")
    assert parsed.passed and parsed.rtt_ms == 201.0
    assert parsed.time_to_direct_ms is None and parsed.rtt_samples_ms is None
    assert len(parsed.notes) == 1


def test_an_image_printing_only_the_rtt_passes_as_before() -> None:
    assert parse_dialer_stdout('{"rtt_to_holepunched_peer_millis": 201}') == Outcome(rtt_ms=201.0)
