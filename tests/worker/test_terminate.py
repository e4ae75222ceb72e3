"""A terminated task process finishes its teardown before a further SIGTERM takes effect."""

import os
import signal

from worker.runner import termination_deferred


def test_sigterm_during_the_teardown_waits_for_its_end() -> None:
    seen: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: seen.append("SIGTERM"))
    try:
        with termination_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            seen.append("teardown done")
        assert seen == ["teardown done", "SIGTERM"]
    finally:
        signal.signal(signal.SIGTERM, previous)
