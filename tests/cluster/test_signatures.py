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


def test_an_upstream_side_reaches_the_worker_in_the_message() -> None:
    from cluster.matrix import matrix_from_yaml, matrix_to_yaml
    from cluster.models import Contract
    test = TestCase(name="a x b (tcp)", dialer="a", listener="b", transport=Transport("tcp"),
                    dialer_contract=Contract.UPSTREAM)
    request = RunRequest(pass_id="p", test=test, dialer=_image("a"), listener=_image("b"),
                         router=_image("r"), relay=_image("relay"), base=_image("base"))
    message = run_test_signature(request).args[1]
    assert message["test"]["dialerContract"] == "upstream"
    assert "listenerContract" not in message["test"] or message["test"]["listenerContract"] is None
    again = RunRequest.model_validate(message).test
    assert again.dialer_contract is Contract.UPSTREAM and again.listener_contract is None
    # test-matrix.yaml names it only on the upstream side, and reads it back
    from cluster.models import MatrixMetadata, TestMatrix
    matrix = TestMatrix(metadata=MatrixMetadata(generated_at="2026-12-03T13:00:00Z", total_tests=1),
                        tests=[test])
    text = matrix_to_yaml(matrix)
    assert "dialerContract: upstream" in text and "listenerContract" not in text
    assert matrix_from_yaml(text).tests[0].dialer_contract is Contract.UPSTREAM
