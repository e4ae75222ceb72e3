"""The test matrix: selected tests in the seed's test-matrix.yaml format, cached by its inputs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cluster.models import DEFAULT_RELAY, MatrixMetadata, TestCase, TestMatrix, to_yaml_data
from cluster.nat import DEFAULT_PRESET
from cluster.selection import Selection
from cluster.yamlio import dump_yaml, parse_yaml, validate


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_matrix(tests: list[TestCase], selection: Selection, kind: str,
                 generated_at: str | None = None, ignored: int = 0) -> TestMatrix:
    return TestMatrix(
        metadata=MatrixMetadata(
            generated_at=generated_at or utc_now(), kind=kind, filter=list(selection.filter),
            ignore=list(selection.ignore), known_failures=list(selection.known_failures),
            dialer_nats=list(selection.dialer_nats), listener_nats=list(selection.listener_nats),
            relays=list(selection.relays), total_tests=len(tests), ignored_tests=ignored),
        tests=tests)


def matrix_cache_key(inputs: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over every (name, content) that shapes the matrix, each framed by its length so
    that no two different input sets can hash alike by shifting bytes between fields."""
    digest = hashlib.sha256(b"holepunch-test-matrix-v1\n")
    for name, content in inputs:
        for part in (name.encode("utf-8"), content):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def drop_default_dimensions(data: dict[str, Any]) -> dict[str, Any]:
    """A test (or record) of the default NAT pair and relay keeps the seed's shape: its NAT
    pair, relay and theory are written only when the pair or relay is not the default."""
    if ((data.get("dialerNat"), data.get("listenerNat"), data.get("relay"))
            == (DEFAULT_PRESET, DEFAULT_PRESET, DEFAULT_RELAY.value)):
        for key in ("dialerNat", "listenerNat", "relay", "theory"):
            data.pop(key, None)
    return data


def matrix_to_yaml(matrix: TestMatrix) -> str:
    data = to_yaml_data(matrix)
    meta = data["metadata"]
    if (meta.get("dialerNats"), meta.get("listenerNats"), meta.get("relays")) == (
            [DEFAULT_PRESET], [DEFAULT_PRESET], [DEFAULT_RELAY.value]):
        for key in ("dialerNats", "listenerNats", "relays"):
            meta.pop(key, None)
    for test in data["tests"]:
        if not test.get("expectedFailure"):
            test.pop("expectedFailure", None)  # keep the seed's shape for ordinary tests
        drop_default_dimensions(test)
    return dump_yaml(data)


def matrix_from_yaml(text: str, source: str = "test-matrix.yaml") -> TestMatrix:
    return validate(TestMatrix, parse_yaml(text, source), source)
