"""The Celery app both sides use. Configured from $HOLEPUNCH_BROKER; the CLIs override it."""

from __future__ import annotations

import gc

from celery import Celery

from cluster.celeryconfig import celery_settings

app = Celery("holepunch")
app.conf.update(celery_settings())


def configure(broker: str | None, max_test_timeout: int, visibility: int | None = None) -> Celery:
    settings = celery_settings(broker, max_test_timeout, visibility)
    moved = app.conf.broker_url != settings["broker_url"]
    app.conf.update(settings)
    if moved:
        _forget_connections()
    return app


def run_worker(*, queues: list[str], concurrency: int, hostname: str, pool: str = "prefork",
               loglevel: str = "INFO", without_mingle: bool = False) -> int:
    """Run a Celery worker of this app in this process until it stops; its exit code.

    Built directly (`app.Worker`), as `celery worker` builds it, without Celery's command line:
    importing that costs about half a second of the worker's boot, which the first test of an
    embedded pass waits for.
    """
    worker = app.Worker(hostname=hostname, pool_cls=pool, loglevel=loglevel,
                        concurrency=concurrency, queues=queues, optimization="fair",
                        task_events=True, without_mingle=without_mingle)
    # Celery's prefork pool runs a full garbage collection before forking each child; with
    # everything imported so far frozen (never collected, and shared copy-on-write), each one
    # is nearly free: measured here, the four children of a worker started in 0.35 s, one
    # after another, before this.
    gc.freeze()
    worker.start()
    return worker.exitcode or 0


def _forget_connections() -> None:
    """Celery keeps the broker pool, producer pool and result backend it made first; after the
    broker URL changes (a second pass, a test, a bench in one process) they would still talk to
    the old broker. Drop them so the next use builds them from the new settings."""
    pool = getattr(app, "_pool", None)
    if pool is not None:
        pool.force_close_all()
    # The private attributes are absent from Celery's stubs, hence the narrow ignores.
    app._pool = None  # type: ignore[attr-defined]
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    app._backend_cache = None  # type: ignore[attr-defined]  # a thread-safe backend; others per thread
    app._local.__dict__.pop("backend", None)  # type: ignore[attr-defined]
