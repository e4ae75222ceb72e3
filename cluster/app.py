"""The Celery app both sides use. Configured from $HOLEPUNCH_BROKER; the CLIs override it."""

from __future__ import annotations

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


def _forget_connections() -> None:
    """Celery keeps the broker pool, producer pool and result backend it made first; after the
    broker URL changes (a second pass, a test, a bench in one process) they would still talk to
    the old broker. Drop them so the next use builds them from the new settings."""
    pool = getattr(app, "_pool", None)
    if pool is not None:
        pool.force_close_all()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    app._backend_cache = None  # a thread-safe backend is cached here, others per thread
    app._local.__dict__.pop("backend", None)
