"""The embedded cluster's liveness check, with fake processes (no Redis, no worker)."""

import shutil
from pathlib import Path

import pytest

from cluster.errors import InfrastructureError
from controller.run.embedded import EmbeddedCluster


class FakeProcess:
    """Stands in for subprocess.Popen: only poll() and returncode."""

    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


def cluster_with(tmp_path: Path, **procs: FakeProcess) -> EmbeddedCluster:
    cluster = EmbeddedCluster(tmp_path, concurrency=1, max_test_timeout=60, log_dir=tmp_path)
    shutil.rmtree(cluster.folder)  # Redis's folder: never started here
    cluster._procs.update(procs)
    return cluster


def test_running_cluster_and_a_finished_services_one_shot_pass_the_check(tmp_path: Path) -> None:
    cluster_with(tmp_path, redis=FakeProcess(None), worker=FakeProcess(None),
                 reporter=FakeProcess(None), services=FakeProcess(0)).check()


def test_an_exited_worker_fails_the_check_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "worker.log").write_text("holepunch-worker: Docker engine not reachable\n")
    cluster = cluster_with(tmp_path, redis=FakeProcess(None), worker=FakeProcess(3),
                           reporter=FakeProcess(None))
    with pytest.raises(InfrastructureError, match=r"embedded worker exited \(3\).*not reachable"):
        cluster.check()


def test_a_niced_child_in_its_own_session_is_niced_as_a_scheduling_group(tmp_path: Path) -> None:
    """With autogroup scheduling a session's processes share one group whose own nice value is
    what counts against the worker's group: the reporter gets both."""
    import os
    import subprocess

    from controller.run.embedded import _lower_priority

    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        _lower_priority(child.pid, 19)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
        autogroup = Path(f"/proc/{child.pid}/autogroup")
        if not autogroup.exists():
            pytest.skip("this kernel has no autogroup scheduling")
        assert autogroup.read_text().split()[-1] == "19"
    finally:
        child.kill()
        child.wait()
