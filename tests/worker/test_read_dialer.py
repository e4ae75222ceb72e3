"""read_dialer: the dialer's output and timings from the engine's API (a fake engine here)."""

from __future__ import annotations

from datetime import UTC, datetime

from docker.errors import NotFound

from worker.runner import DialerReport, read_dialer


class FakeDialerContainer:
    def __init__(self, stdout: bytes, stderr: bytes, started: str, finished: str):
        self._stdout, self._stderr = stdout, stderr
        self.attrs = {"State": {"StartedAt": started, "FinishedAt": finished}}

    def logs(self, stdout: bool, stderr: bool) -> bytes:
        return (self._stdout if stdout else b"") + (self._stderr if stderr else b"")


class FakeContainers:
    def __init__(self, by_project: dict[str, FakeDialerContainer], gone: bool = False):
        self.by_project, self.gone, self.asked = by_project, gone, []

    def list(self, all: bool, filters: dict) -> list[FakeDialerContainer]:  # noqa: A002
        self.asked.append((all, filters))
        if self.gone:
            raise NotFound("removed meanwhile")
        labels = filters["label"]
        if "com.docker.compose.service=dialer" not in labels:
            return []
        return [c for project, c in self.by_project.items()
                if f"com.docker.compose.project={project}" in labels]


class FakeDockerClient:
    def __init__(self, containers: FakeContainers):
        self.containers = containers


def test_reads_stdout_stderr_and_timings_of_the_projects_dialer() -> None:
    up_started = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC).timestamp()
    dialer = FakeDialerContainer(b'log\n{"rtt_to_holepunched_peer_millis": 201}\n', b"punched\n",
                                 "2026-11-25T12:00:01.500000000Z", "2026-11-25T12:00:09.250000123Z")
    containers = FakeContainers({"hp-a": dialer, "hp-b": FakeDialerContainer(b"", b"", "", "")})
    report = read_dialer(FakeDockerClient(containers), "hp-a", up_started)
    assert report.stdout.endswith('{"rtt_to_holepunched_peer_millis": 201}\n')
    assert report.stderr == "punched\n"
    assert abs(report.up_s - 1.5) < 1e-6 and abs(report.run_s - 7.75) < 1e-6
    assert containers.asked[0][0] is True  # exited containers too: the dialer has finished


def test_a_dialer_that_never_started_has_no_timings() -> None:
    never = FakeDialerContainer(b"", b"", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z")
    report = read_dialer(FakeDockerClient(FakeContainers({"hp-a": never})), "hp-a", 0.0)
    assert report == DialerReport()


def test_no_dialer_or_one_removed_meanwhile_reads_as_nothing_printed() -> None:
    assert read_dialer(FakeDockerClient(FakeContainers({})), "hp-a", 0.0) == DialerReport()
    gone = FakeContainers({}, gone=True)
    assert read_dialer(FakeDockerClient(gone), "hp-a", 0.0) == DialerReport()
