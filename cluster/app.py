"""The Celery app both sides use. Configured from $HOLEPUNCH_BROKER; the CLIs override it."""

from __future__ import annotations

from celery import Celery

from cluster.celeryconfig import celery_settings

app = Celery("holepunch")
app.conf.update(celery_settings())


def configure(broker: str | None, max_test_timeout: int, visibility: int | None = None) -> Celery:
    app.conf.update(celery_settings(broker, max_test_timeout, visibility))
    return app
