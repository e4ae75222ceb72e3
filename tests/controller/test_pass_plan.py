"""The plan `run_pass` gets: built from the flags, the choice of cluster, the matrix and images;
settings.yaml, the tasks and the deadline follow from it alone (controller.run.pass_plan)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from cluster.cache import Cache
from cluster.celeryconfig import CONTROLLER_QUEUE, TASK_OVERHEAD_SECONDS
from cluster.evidence import CaptureMode
from cluster.models import GitInfo, ImageInfo, Relay
from controller.plan.matrix import plan_matrix
from controller.run.pass_plan import (
    PassOutputs,
    SubmitOptions,
    deadline_seconds,
    default_deadline,
    plan_pass,
    relays_of,
    requests_for,
    settings_for,
)
from controller.run.where import EmbeddedDefault, ExternalBroker

GIT = GitInfo(repository="origin", branch="main", commit="c" * 40, dirty_working_tree=False)
SYSTEM = {"platform": "x86_64", "docker": "27.0", "dockerCompose": None}


def image(name: str) -> ImageInfo:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return ImageInfo(image_id=digest, image_name=name, built_at="t", arch="x86_64")


@pytest.fixture
def planned(repo: Path, tmp_path: Path):
    matrix = plan_matrix(repo, "rust", None, None, Cache(tmp_path / "cache")).matrix
    names = {"base", "router", "rust-relay", *(n for t in matrix.tests for n in (t.dialer, t.listener))}
    return matrix, {name: image(name) for name in names}


DEFAULT_WHERE = EmbeddedDefault(None, 120)


def plan_of(planned, options: SubmitOptions, where=DEFAULT_WHERE):
    matrix, images = planned
    return plan_pass(options, where, "rust", "--kind rust", matrix, images, "27.0", GIT,
                     Path("impl/base"))


def test_the_plan_takes_the_flags_and_resolves_the_output_paths(planned, tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = SubmitOptions(root=tmp_path, output_dir=Path("out"), timeout=30, retries=2,
                            workers=4, update_readme=Path("README.md"), image_source="http://c",
                            deadline=600)
    plan = plan_of(planned, options)
    assert plan.outputs == PassOutputs(output_dir=tmp_path / "out",
                                       update_readme=tmp_path / "README.md")
    assert (plan.timeout, plan.retries, plan.workers, plan.deadline) == (30, 2, 4, 600)
    assert (plan.image_source, plan.controller_queue) == ("http://c", CONTROLLER_QUEUE)
    assert (plan.kind, plan.reason, plan.engine, plan.git) == ("rust", "--kind rust", "27.0", GIT)
    assert plan.base_dir == Path("impl/base") and plan.matrix is planned[0]
    assert plan.where == EmbeddedDefault(None, 120)


def test_no_readme_stays_none(planned, tmp_path: Path) -> None:
    assert plan_of(planned, SubmitOptions(root=tmp_path)).outputs.update_readme is None


def test_the_plan_is_frozen(planned, tmp_path: Path) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan_of(planned, SubmitOptions(root=tmp_path)).timeout = 1


@pytest.mark.parametrize(("where", "detached"), [
    (EmbeddedDefault(None, 120), False),
    (ExternalBroker("redis://b:6379/0", detach=False), False),
    (ExternalBroker("redis://b:6379/0", detach=True), True)])
def test_only_a_detached_broker_pass_is_detached(planned, tmp_path: Path, where,
                                                 detached: bool) -> None:
    assert plan_of(planned, SubmitOptions(root=tmp_path), where).detached is detached


@pytest.mark.parametrize(("where", "label"), [(EmbeddedDefault(2, 120), "embedded"),
                                              (ExternalBroker("redis://b:6379/0"), "external")])
def test_settings_yaml_comes_from_the_plan(planned, tmp_path: Path, where, label: str) -> None:
    plan = plan_of(planned, SubmitOptions(root=tmp_path, timeout=45, retries=1, workers=2), where)
    settings = settings_for(plan, "hole-punch-rust-1", tmp_path / "cache", SYSTEM)
    assert (settings.test_pass.name, settings.test_pass.kind, settings.test_pass.triggered_by) == \
        ("hole-punch-rust-1", "rust", "--kind rust")
    execution = settings.execution
    assert (execution.broker, execution.worker_count, execution.timeout_seconds,
            execution.retries, execution.cache_dir) == (label, 2, 45, 1, str(tmp_path / "cache"))
    assert settings.git == GIT and settings.system == SYSTEM
    assert settings.filters.test_filter == list(planned[0].metadata.filter)
    assert settings.filters.test_ignore == list(planned[0].metadata.ignore)


def test_one_request_per_test_on_the_plans_images(planned, tmp_path: Path) -> None:
    matrix, images = planned
    plan = plan_of(planned, SubmitOptions(root=tmp_path, timeout=45, retries=1,
                                          image_source="http://c"))
    requests = requests_for(plan, "p")
    assert [r.test for r in requests] == matrix.tests and len(requests) > 1
    for request in requests:
        assert request.pass_id == "p"
        assert (request.dialer, request.listener) == (images[request.test.dialer],
                                                      images[request.test.listener])
        assert (request.router, request.relay, request.base) == (
            images["router"], images["rust-relay"], images["base"])
        assert (request.timeout_seconds, request.retries, request.image_source) == (45, 1, "http://c")


def test_capture_reaches_every_request_and_defaults_to_failures(planned, tmp_path: Path) -> None:
    default = requests_for(plan_of(planned, SubmitOptions(root=tmp_path)), "p")
    assert {r.capture for r in default} == {CaptureMode.FAILURES}
    every = requests_for(plan_of(planned, SubmitOptions(root=tmp_path,
                                                        capture=CaptureMode.ALL)), "p")
    assert {r.capture for r in every} == {CaptureMode.ALL}


def test_the_deadline_is_every_test_at_its_timeout_two_at_once_unless_told(planned,
                                                                           tmp_path: Path) -> None:
    tests = len(planned[0].tests)
    plan = plan_of(planned, SubmitOptions(root=tmp_path, timeout=10, retries=1))
    per_test = (10 + TASK_OVERHEAD_SECONDS) * 2
    assert deadline_seconds(plan) == default_deadline(tests, 10, 1, 2) == \
        per_test * -(-tests // 2) + 300
    wide = plan_of(planned, SubmitOptions(root=tmp_path, timeout=10, retries=1, workers=tests))
    assert deadline_seconds(wide) == per_test + 300
    told = plan_of(planned, SubmitOptions(root=tmp_path, deadline=42))
    assert deadline_seconds(told) == 42


def test_known_failures_are_sent_last_under_their_own_timeout(planned, tmp_path: Path) -> None:
    matrix, images = planned
    known = {matrix.tests[0].name, matrix.tests[2].name}
    marked = matrix.model_copy(update={"tests": [
        t.model_copy(update={"expected_failure": t.name in known}) for t in matrix.tests]})
    plan = plan_of((marked, images), SubmitOptions(root=tmp_path, timeout=120,
                                                   known_failure_timeout=20))
    requests = requests_for(plan, "p")
    assert [r.test.name for r in requests] == \
        [t.name for t in marked.tests if t.name not in known] + \
        [t.name for t in marked.tests if t.name in known]
    assert {r.test.name: r.timeout_seconds for r in requests} == \
        {t.name: 20 if t.name in known else 120 for t in marked.tests}
    settings = settings_for(plan, "p", tmp_path / "cache", SYSTEM)
    assert settings.execution.known_failure_timeout_seconds == 20


def test_each_request_carries_the_image_of_its_own_relay(repo: Path, tmp_path: Path) -> None:
    matrix = plan_matrix(repo, "rust", None, None, Cache(tmp_path / "cache"),
                         cli_relay="rust,go").matrix
    assert relays_of(matrix) == [Relay.RUST, Relay.GO]
    names = {"base", "router", "rust-relay", "go-relay",
             *(n for t in matrix.tests for n in (t.dialer, t.listener))}
    images = {name: image(name) for name in names}
    plan = plan_of((matrix, images), SubmitOptions(root=tmp_path))
    requests = requests_for(plan, "p")
    through = {relay: [r for r in requests if r.test.relay is relay] for relay in Relay}
    assert through[Relay.RUST] and len(through[Relay.GO]) == len(through[Relay.RUST])
    assert {r.relay.image_name for r in through[Relay.RUST]} == {"rust-relay"}
    assert {r.relay.image_name for r in through[Relay.GO]} == {"go-relay"}
    assert all(r.test.name.endswith(" [relay go]") for r in through[Relay.GO])
    assert not any("[relay" in r.test.name for r in through[Relay.RUST])


def test_a_pass_through_the_go_relay_alone_needs_no_rust_relay(repo: Path, tmp_path: Path) -> None:
    matrix = plan_matrix(repo, "rust", None, None, Cache(tmp_path / "cache"),
                         cli_relay="go").matrix
    assert relays_of(matrix) == [Relay.GO]
    names = {"base", "router", "go-relay", *(n for t in matrix.tests for n in (t.dialer, t.listener))}
    plan = plan_of((matrix, {name: image(name) for name in names}), SubmitOptions(root=tmp_path))
    assert {r.relay.image_name for r in requests_for(plan, "p")} == {"go-relay"}


def test_a_matrix_with_no_tests_falls_back_to_the_default_relay(planned) -> None:
    matrix, _ = planned
    assert relays_of(matrix.model_copy(update={"tests": []})) == [Relay.RUST]
