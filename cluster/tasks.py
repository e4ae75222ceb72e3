"""The messages between controller and workers: task names, the request, the signature.

The controller never imports the worker: it names the task, and the worker registers it.
"""

from __future__ import annotations

from celery import Signature
from pydantic import Field

from cluster.app import app
from cluster.celeryconfig import DEFAULT_TEST_TIMEOUT, TEST_QUEUE
from cluster.models import ImageInfo, TestCase, YamlModel
from cluster.network import DEFAULT_DELAY_MS

RUN_TEST = "holepunch.run_test"
AGGREGATE = "holepunch.aggregate"


class RunRequest(YamlModel):
    """Everything a worker needs to run one test on any Docker host."""

    pass_id: str
    test: TestCase
    dialer: ImageInfo
    listener: ImageInfo
    router: ImageInfo
    relay: ImageInfo
    base: ImageInfo  # the global Redis runs on it
    timeout_seconds: int = Field(default=DEFAULT_TEST_TIMEOUT, gt=0)
    delay_ms: int = DEFAULT_DELAY_MS
    image_source: str | None = None  # cache directory or http(s) URL holding images/<id>.tar.zst
    retries: int = Field(default=0, ge=0)  # re-runs of a failing test (on any host) before it fails


# Signatures are bound to our app, never to Celery's "current app" (the last one created in the
# process, which a library or a test may have made).
def run_test_signature(request: RunRequest) -> Signature:
    """`run_test(test name, request)`: the name comes first, and monitors (Flower's args column,
    `celery inspect`) are shown only the name, not the whole request."""
    return app.signature(RUN_TEST, args=(request.test.name,
                                     request.model_dump(mode="json", by_alias=True)),
                     queue=TEST_QUEUE, argsrepr=repr((request.test.name,)), kwargsrepr="{}")


def aggregate_signature(spec: dict, queue: str) -> Signature:
    """The chord's body; Celery passes the list of run_test results first."""
    return app.signature(AGGREGATE, args=(spec,), queue=queue)
