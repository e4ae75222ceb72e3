"""Task signatures go through our app even when another Celery app became "current"."""

from __future__ import annotations

from celery import Celery

from cluster.app import app
from cluster.models import ImageInfo, TestCase, Transport
from cluster.tasks import RunRequest, aggregate_signature, run_test_signature


def _image(name: str) -> ImageInfo:
    return ImageInfo(image_id="b" * 64, image_name=name, built_at="2026-11-25T12:00:00Z", arch="x86_64")


def test_bound_to_our_app_not_the_current_one() -> None:
    Celery("some-other-app")  # becomes Celery's current app
    request = RunRequest(pass_id="p", test=TestCase(name="a x b (tcp)", dialer="a", listener="b",
                                                    transport=Transport("tcp")),
                         dialer=_image("a"), listener=_image("b"), router=_image("r"),
                         relay=_image("relay"), base=_image("base"))
    assert run_test_signature(request).app is app
    assert aggregate_signature({}, "q").app is app
    assert run_test_signature(request).options["argsrepr"] == "('a x b (tcp)',)"
