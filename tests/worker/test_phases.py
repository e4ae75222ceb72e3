"""The worker's timings line: written per test, read back by bench/overhead.py."""

from __future__ import annotations

from worker.phases import Phases, parse_line


def test_a_timings_line_reads_back() -> None:
    phases = Phases()
    with phases("creates"):
        pass
    phases.add("run", 4.25)
    phases.add("run", 0.5)
    name, seconds = parse_line("[2026-12-03 12:00:00: INFO/ForkPoolWorker-1] "
                               + phases.line("rust-v0.57 x go-v0.51 (tcp)"))
    assert name == "rust-v0.57 x go-v0.51 (tcp)"
    assert seconds["run"] == 4.75 and "creates" in seconds and "total" in seconds


def test_other_lines_hold_none() -> None:
    assert parse_line("[INFO] Task run_test succeeded") is None
