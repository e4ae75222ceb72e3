"""Where a pass runs is decided once, from --broker and --detach (controller.run.where)."""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from pathlib import Path

import pytest

from cluster.errors import EXIT_BAD_INPUT, UsageError
from controller.run import where as where_module
from controller.run.embedded import EmbeddedCluster
from controller.run.where import EmbeddedDefault, ExternalBroker, start_cluster, where_pass_runs

BROKER = "redis://:secret@broker:6379/0"


def test_without_a_broker_the_pass_runs_on_the_embedded_default() -> None:
    where = where_pass_runs(None, False, 3, 90)
    assert where == EmbeddedDefault(workers=3, max_test_timeout=90)
    assert where.label == "embedded"


def test_an_empty_broker_is_no_broker() -> None:
    assert isinstance(where_pass_runs("", False, None, 120), EmbeddedDefault)


def test_with_a_broker_the_pass_runs_on_it_attached() -> None:
    where = where_pass_runs(BROKER, False, 3, 90)
    assert where == ExternalBroker(broker=BROKER, detach=False)
    assert where.label == "external"


def test_with_a_broker_a_pass_may_be_detached() -> None:
    assert where_pass_runs(BROKER, True, None, 120) == ExternalBroker(broker=BROKER, detach=True)


@pytest.mark.parametrize("broker", [None, ""])
def test_detach_without_a_broker_is_bad_input(broker: str | None) -> None:
    with pytest.raises(UsageError, match="needs --broker") as caught:
        where_pass_runs(broker, True, None, 120)
    assert caught.value.exit_code == EXIT_BAD_INPUT and caught.value.key == "--detach"


def test_the_embedded_default_starts_an_embedded_cluster_of_its_settings(tmp_path: Path) -> None:
    cluster = start_cluster(EmbeddedDefault(workers=2, max_test_timeout=77), tmp_path)
    assert isinstance(cluster, EmbeddedCluster)  # not entered: nothing started
    assert (cluster.cache_dir, cluster.concurrency, cluster.max_test_timeout) == (tmp_path, 2, 77)
    shutil.rmtree(cluster.folder)  # its submit.pid only


def test_a_broker_starts_nothing(tmp_path: Path) -> None:
    with start_cluster(ExternalBroker(broker=BROKER), tmp_path) as cluster:
        assert cluster is None
    assert isinstance(start_cluster(ExternalBroker(broker=BROKER), tmp_path), nullcontext)


def test_submit_detach_without_broker_exits_2(run_cli, monkeypatch) -> None:
    def no_cluster(*_args):
        raise AssertionError("submit started a cluster: --detach without --broker got through")
    monkeypatch.setattr(where_module, "start_cluster", no_cluster)
    code, _, err = run_cli("submit", "--detach")
    assert code == EXIT_BAD_INPUT, err
    assert "--detach" in err and "needs --broker" in err and "Traceback" not in err
