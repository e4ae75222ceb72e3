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


def test_sigterm_taken_by_another_thread_still_waits_for_the_teardown() -> None:
    """A signal sent to the process may be handed to any thread: with the teardown's removal
    threads alive, it must still wait (a blocked signal mask would not: it is per thread)."""
    import threading
    import time

    seen: list[str] = []
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, daemon=True)
    helper.start()
    def handler(*_: object) -> None:
        seen.append("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with termination_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # twice: delivered once, after the block
            time.sleep(0.3)  # a teardown takes its time: room for the helper thread to take it
            seen.append("teardown done")
        assert seen == ["teardown done", "SIGTERM"]
        assert signal.getsignal(signal.SIGTERM) is handler  # the task's own handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        helper.join()
