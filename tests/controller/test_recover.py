"""A pass whose every test has a stored result but whose callback never ran: the reporter's watch
finishes it from the stored results and stores the summary under the aggregate's id; a late
callback then returns that summary instead of writing the pass again. On a real Redis on
loopback (no Docker, no worker)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from celery.result import AsyncResult, GroupResult

from cluster.app import configure
from cluster.cache import Cache
from cluster.models import Status
from controller.results.recover import SPEC_KEY, LostCallbacks, claim, finisher
from controller.results.registered import PASS_KEY
from tests.controller.test_finish import case, payload, spec_for

PATHS = {"output_dir", "update_readme", "cache_dir", "base_dir"}


@pytest.fixture
def app(tmp_path: Path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                             "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    app = configure(f"redis://127.0.0.1:{port}/0", 120)
    yield app
    app.backend.remove_pending_result = lambda result: result  # results die after the Redis
    proc.terminate()
    proc.wait()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registered_pass(app, tmp_path: Path, stored: int):
    """A pass of three tests, `stored` of which have a result; its registry entry and spec."""
    tests = [case("a", "a"), case("a", "b"), case("b", "a")]
    spec = spec_for(tmp_path, tests)
    ids = [str(uuid.uuid4()) for _ in tests]
    for task_id, test in list(zip(ids, tests, strict=True))[:stored]:
        app.backend.store_result(task_id, payload(test, Status.PASS), "SUCCESS")
    group = GroupResult(str(uuid.uuid4()), [AsyncResult(i, app=app) for i in ids], app=app)
    group.save()
    aggregate = str(uuid.uuid4())
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        client.set(PASS_KEY.format(spec.name), json.dumps({
            "group": group.id, "aggregate": aggregate, "total": 3,
            "outputs": {"outputDir": str(tmp_path / "out"), "baseDir": spec.base_dir}}))
        client.set(SPEC_KEY.format(spec.name),
                   json.dumps(spec.model_dump(mode="json", by_alias=True, exclude=PATHS)))
    return spec, aggregate


def test_the_reporter_finishes_a_pass_whose_callback_was_lost(app, tmp_path: Path) -> None:
    spec, aggregate = registered_pass(app, tmp_path, stored=3)
    clock = Clock()
    watch = LostCallbacks(app, Cache(tmp_path / "cache"), grace=10, clock=clock)
    assert watch.scan() == []            # complete just now: the callback may still come
    clock.now += 11
    assert watch.scan() == [spec.name]
    result = AsyncResult(aggregate, app=app)
    assert result.successful() and result.result["total"] == 3 and not result.result["partial"]
    assert result.result["passed"] == 3
    out = tmp_path / "out"
    assert "finished by the reporter" in (out / "output.log").read_text()
    assert len((out / "results.yaml").read_text().split("name: ")) == 4
    assert watch.scan() == []            # once
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        assert finisher(client, spec.name) == "reporter"
        assert not claim(client, spec.name, "aggregate")  # a late callback does not write it


def test_a_pass_still_waiting_for_a_test_is_left_alone(app, tmp_path: Path) -> None:
    spec, aggregate = registered_pass(app, tmp_path, stored=2)
    clock = Clock()
    watch = LostCallbacks(app, Cache(tmp_path / "cache"), grace=10, clock=clock)
    for _ in range(3):
        assert watch.scan() == []
        clock.now += 100
    assert not AsyncResult(aggregate, app=app).ready()
    assert not (tmp_path / "out").exists()
