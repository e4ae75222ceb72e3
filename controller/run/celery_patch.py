"""The one place the controller reaches into Celery's internals, and why.

A pass on the embedded default stops its Redis right after the last result. Celery's Redis
result backend keeps a pub/sub listener for every result still pending, and each AsyncResult
still alive at exit unsubscribes in its finaliser, from a broker that is gone by then, and that
fails. Nothing is left to wait for once a pass is reported (or detached), so the backend is told
to forget its results quietly and its listener is stopped while the broker still runs.
"""

from __future__ import annotations

from celery import Celery


def stop_result_listener(app: Celery) -> None:
    """Stop listening for results while the broker still runs (the embedded one stops next)."""
    backend = app.backend
    # Internal: the backend's hook that unsubscribes a finalised result. A no-op from here on.
    # Both are the async (Redis) backend's, absent from the stubs' Backend: narrow ignores.
    backend.remove_pending_result = lambda result: result  # type: ignore[attr-defined]
    try:
        backend.result_consumer.stop()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - nothing to stop, or the broker is already gone
        pass
