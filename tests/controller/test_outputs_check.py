"""Refused before the first test: outputs that could not be written after the last one."""

from __future__ import annotations

from pathlib import Path

import celery.exceptions
import pytest

from cluster.errors import InfrastructureError, UsageError
from controller.results.tasks import PROBE_PREFIX, reporter_sees
from controller.run.outputs import check_local, check_reporter_sees


class FakeResult:
    def __init__(self, answer):
        self.answer = answer

    def get(self, timeout):
        if self.answer is TimeoutError:
            raise celery.exceptions.TimeoutError()
        return self.answer(*self.args) if callable(self.answer) else self.answer

    def forget(self):
        pass


class FakeApp:
    """send_task answered by a reporter that sees `visible` (a function of folder and token)."""

    def __init__(self, answer):
        self.answer, self.sent = answer, []

    def send_task(self, name, args, queue):
        self.sent.append((name, args, queue))
        result = FakeResult(self.answer)
        result.args = args
        return result


def test_the_reporter_reads_submits_probe_back(tmp_path: Path) -> None:
    token = "0123456789abcdef" * 2
    assert reporter_sees(str(tmp_path), token) is False  # no probe: another host's folder
    (tmp_path / f"{PROBE_PREFIX}{token}").write_text(token)
    assert reporter_sees(str(tmp_path), token) is True
    assert reporter_sees(str(tmp_path), "../../etc/passwd") is False


def test_a_detached_pass_whose_folder_the_reporter_cannot_see_exits_2(tmp_path: Path) -> None:
    app = FakeApp(False)
    with pytest.raises(UsageError, match="reporter cannot see") as raised:
        check_reporter_sees(app, tmp_path, "--output-dir", "holepunch.controller")
    assert raised.value.exit_code == 2
    assert not list(tmp_path.glob(f"{PROBE_PREFIX}*")), "the probe file is removed"
    app = FakeApp(reporter_sees)  # the reporter on this very host: it sees the probe
    check_reporter_sees(app, tmp_path, "--output-dir", "holepunch.controller")
    with pytest.raises(InfrastructureError, match="no reporter answered"):
        check_reporter_sees(FakeApp(TimeoutError), tmp_path, "--output-dir", "q", timeout=0.1)


def test_an_output_folder_or_readme_this_host_cannot_write_exits_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="--output-dir"):
        check_local(tmp_path / "file" / "out", None)
    (tmp_path / "README.md").write_text("# no markers\n")
    with pytest.raises(Exception, match="dashboard marker"):
        check_local(tmp_path / "out", tmp_path / "README.md")
    with pytest.raises(UsageError, match="--update-readme"):
        check_local(tmp_path / "out", tmp_path / "missing.md")
