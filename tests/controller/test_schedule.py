"""Known failures are enqueued after the others, under their own shorter timeout."""

from __future__ import annotations

from cluster.models import TestCase, Transport
from controller.plan.schedule import run_order, timeout_for


def _test(name: str, expected_failure: bool = False) -> TestCase:
    dialer, listener = name.split(" x ")
    return TestCase(name=f"{name} (tcp)", dialer=dialer, listener=listener,
                    transport=Transport.TCP, expected_failure=expected_failure)


def test_known_failures_run_last_in_matrix_order() -> None:
    tests = [_test("js-v3.3 x go-v0.51", True), _test("go-v0.51 x go-v0.51"),
             _test("go-v0.51 x js-v3.3", True), _test("rust-v0.57 x go-v0.51")]
    assert [t.name for t in run_order(tests)] == [
        "go-v0.51 x go-v0.51 (tcp)", "rust-v0.57 x go-v0.51 (tcp)",
        "js-v3.3 x go-v0.51 (tcp)", "go-v0.51 x js-v3.3 (tcp)"]


def test_a_known_failure_gets_the_shorter_timeout() -> None:
    known, plain = _test("js-v3.3 x go-v0.51", True), _test("go-v0.51 x go-v0.51")
    assert timeout_for(known, 120, 20) == 20
    assert timeout_for(plain, 120, 20) == 120
    assert timeout_for(known, 10, 20) == 10   # never longer than --timeout
    assert timeout_for(known, 120, None) == 120
