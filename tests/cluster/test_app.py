"""configure() moves the shared Celery app to a new broker completely (pools and backend)."""

from __future__ import annotations

from cluster.app import app, configure


def test_a_second_broker_replaces_the_first_everywhere() -> None:
    configure("redis://127.0.0.1:1/0", 60)
    first_pool, first_backend = app.pool, app.backend  # built lazily; nothing connects yet
    assert ":1/" in first_pool.connection.as_uri()
    configure("redis://127.0.0.1:2/0", 60)
    assert ":2/" in app.pool.connection.as_uri() and app.pool is not first_pool
    assert app.backend is not first_backend and ":2/" in app.backend.as_uri()
    assert ":2/" in app.producer_pool.connections.connection.as_uri()
