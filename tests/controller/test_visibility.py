"""--timeout against the consumers' visibility timeouts (replies of `inspect conf`, faked; a real
worker's: tests/e2e/controller/test_visibility.py)."""

from __future__ import annotations

import pytest

from cluster.celeryconfig import celery_settings
from cluster.errors import UsageError
from controller.run.visibility import check_visibility, consumer_visibilities, refusal


def conf(max_test_timeout: int, visibility: int | None = None) -> dict:
    return {"broker_transport_options": celery_settings(
        "redis://x", max_test_timeout, visibility)["broker_transport_options"]}


class FakeApp:
    def __init__(self, replies: dict):
        self.replies = replies
        outer = self

        class Inspect:
            def __init__(self, timeout: float):
                pass

            def conf(self):
                return outer.replies

        self.control = type("Control", (), {"inspect": lambda _self, timeout: Inspect(timeout)})()


def test_consumers_started_for_the_timeout_are_accepted() -> None:
    replies = {"holepunch@a": conf(600), "reporter@c": conf(600)}
    assert check_visibility(FakeApp(replies), 600) == {"holepunch@a": 840, "reporter@c": 840}
    assert check_visibility(FakeApp({}), 600) == {}


def test_a_timeout_one_consumer_cannot_cover_is_refused_with_the_numbers() -> None:
    replies = {"holepunch@a": conf(600), "holepunch@b": conf(120), "reporter@c": conf(120, 90)}
    with pytest.raises(UsageError) as caught:
        check_visibility(FakeApp(replies), 600)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    for part in ("--timeout", "600 s per test", "at least 840 s", "holepunch@b has 360 s",
                 "reporter@c has 90 s", "--max-test-timeout 600", "a restart of those"):
        assert part in message, message
    assert "holepunch@a" not in message


def test_the_largest_timeout_that_fits_is_named() -> None:
    assert "--timeout 120 or less" in refusal(121, {"w": 360})
    assert refusal(120, {"w": 360}) is None
    assert consumer_visibilities({"w": {"broker_transport_options": "hidden"}, "v": None}) == {}
