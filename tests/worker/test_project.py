"""worker.project: the compose document of a test, read into what the engine must create.

The pure planning is checked against the golden compose files; the order of `up` (networks,
creates, routers, the relay hand-over, their healthchecks, then the clients) against a fake
engine API that records its calls. The real engine runs it in the worker's e2e tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from docker.errors import NotFound

from cluster.errors import ConfigError
from worker.project import (
    NETWORK,
    PROJECT,
    SERVICE,
    Project,
    duration_ns,
    file_test,
    plan_project,
)

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str = "rust-x-go-tcp.yaml") -> dict:
    return yaml.safe_load((GOLDEN / name).read_text())


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_golden_document_is_understood(path: Path) -> None:
    plan = plan_project("hp-x", yaml.safe_load(path.read_text()))
    assert [s.name for s in plan.services][:4] == ["dialer", "listener", "dialer_router",
                                               "listener_router"]


def test_names_and_labels_are_docker_composes() -> None:
    plan = plan_project("hp-pass-test-0123456789", golden())
    dialer = plan.service("dialer")
    assert dialer.container == "hp-pass-test-0123456789_dialer_1"
    assert dialer.labels[PROJECT] == "hp-pass-test-0123456789"
    assert dialer.labels[SERVICE] == "dialer"
    assert dialer.labels["holepunch.test"] == "rust-v0.56 x go-v0.45 (tcp)"
    lans = {n.key: n for n in plan.networks}
    assert lans["lan_dialer"].name == "hp-pass-test-0123456789_lan_dialer"
    assert lans["lan_dialer"].labels[NETWORK] == "lan_dialer"
    assert lans["lan_dialer"].subnets == ("10.201.0.0/24",)
    assert lans["lan_dialer"].options == {"com.docker.network.bridge.enable_ip_masquerade": "false"}
    assert lans["hole-punch-network"].external and lans["hole-punch-network"].name == "hole-punch-network"


def test_router_keeps_its_fixed_lan_address_capabilities_and_sysctls() -> None:
    router = plan_project("p", golden()).service("dialer_router")
    assert dict(router.networks) == {"hole-punch-network": None, "p_lan_dialer": "10.201.0.2"}
    assert router.cap_add == ("NET_ADMIN", "SYS_NICE")
    assert router.sysctls == {"net.ipv4.ip_forward": "1"} and router.init
    assert router.healthcheck == {"test": ["CMD", "test", "-f", "/tmp/setup-done"],
                                  "interval": 250_000_000, "timeout": 2_000_000_000, "retries": 120}
    assert router.stop_timeout == 2


def test_clients_start_in_a_second_wave_after_their_healthy_routers() -> None:
    plan = plan_project("p", golden())
    assert [[s.name for s in wave] for wave in plan.waves()] == [
        ["dialer_router", "listener_router"], ["dialer", "listener"]]
    assert plan.service("dialer").depends_on == {"dialer_router": "service_healthy"}


@pytest.mark.parametrize("text, ns", [("250ms", 250_000_000), ("2s", 2_000_000_000),
                                      ("1m30s", 90_000_000_000), ("1.5s", 1_500_000_000), (3, 3_000_000_000)])
def test_durations(text, ns) -> None:
    assert duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "2", "2 s", "fast", "2sec"])
def test_bad_durations_are_refused(text) -> None:
    with pytest.raises(ConfigError):
        duration_ns(text)


def test_a_key_it_cannot_run_is_refused_not_ignored() -> None:
    document = golden()
    document["services"]["dialer"]["privileged"] = True
    with pytest.raises(ConfigError, match="privileged"):
        plan_project("p", document)


def test_an_undeclared_network_or_a_dependency_cycle_is_refused() -> None:
    document = golden()
    document["services"]["dialer"]["networks"] = ["lan_nowhere"]
    with pytest.raises(ConfigError, match="lan_nowhere"):
        plan_project("p", document)
    document = golden()
    document["services"]["dialer_router"]["depends_on"] = {"dialer": {"condition": "service_started"}}
    with pytest.raises(ConfigError, match="cycle"):
        plan_project("p", document)


class FakeEngineAPI:
    """A fake of the few docker.APIClient calls `Project.up` makes: it records them in order.

    Each router's healthcheck fails once, then passes; the dialer "dies" with `dialer_exit`.
    """

    def __init__(self, dialer_exit: int = 0, first_to_die: str = "dialer") -> None:
        self.calls: list[str] = []
        self.checks: dict[str, int] = {}
        self.dialer_exit = dialer_exit
        self.first_to_die = first_to_die
        self.names: dict[str, str] = {}
        self.execs: list[str] = []       # the healthchecks run as a process in the container
        self.file_mode = 0o644           # what the stat of a checked file says it is

    # --- creation
    def create_network(self, name, **_):
        self.calls.append(f"network {name}")

    def create_endpoint_config(self, **kwargs):
        return kwargs

    def create_networking_config(self, endpoints):
        return endpoints

    def create_host_config(self, **kwargs):
        return kwargs

    def create_container(self, image, name, **kwargs):
        assert kwargs["healthcheck"] == {"test": ["NONE"]}  # Project runs it, never the engine
        self.calls.append(f"create {name}")
        self.names[name] = name
        return {"Id": name}

    def connect_container_to_network(self, container, network, **_):
        self.calls.append(f"connect {container} {network}")

    def start(self, container):
        self.calls.append(f"start {container}")

    # --- state
    def inspect_container(self, container):
        return {"State": {"Running": True}}

    def exec_create(self, container, command, **_):
        self.checks[container] = self.checks.get(container, 0) + 1
        self.execs.append(container)
        return {"Id": container}

    def exec_start(self, exec_id):
        pass

    def exec_inspect(self, exec_id):
        return {"ExitCode": 0 if self.passes(exec_id) else 1}

    def get_archive(self, container, path):
        """The engine's stat of `path` (a `test -f` healthcheck): a regular file once it passes."""
        self.checks[container] = self.checks.get(container, 0) + 1
        if not self.passes(container):
            raise NotFound(f"Could not find the file {path} in container {container}")
        return iter([b"\0" * 1024]), {"name": path.rsplit("/", 1)[1], "size": 0,
                                        "mode": self.file_mode, "linkTarget": ""}

    def passes(self, container) -> bool:
        return self.checks[container] > 1

    def events(self, **kwargs):
        self.calls.append("events")
        service = self.first_to_die
        code = self.dialer_exit if service == "dialer" else 1
        self.event_filters = kwargs.get("filters")
        container = next((c for c in self.names if c.endswith(f"_{service}_1")), service)
        return FakeStream([{"id": container, "Actor": {"ID": container, "Attributes": {
            SERVICE: service, "exitCode": str(code)}}}])

    def logs(self, container, **_):
        return f"2026-01-01T00:00:00.000000000Z hello from {container}\n".encode()


class FakeStream(list):
    def close(self):
        pass


class FakeClient:
    def __init__(self, api: FakeEngineAPI) -> None:
        self.api = api


def test_up_orders_networks_creates_routers_relay_handover_then_clients() -> None:
    api = FakeEngineAPI(dialer_exit=0)
    project = Project(FakeClient(api), plan_project("p", golden()))
    project_run = project.up(timeout=30, prepare=lambda: api.calls.append("prepare"))
    assert project_run.exit_code == 0 and project_run.failure is None and not project_run.timed_out
    calls = api.calls
    assert {c for c in calls[:2]} == {"network p_lan_dialer", "network p_lan_listener"}
    assert calls.index("start p_dialer_router_1") < calls.index("prepare") \
        < calls.index("start p_dialer_1") < calls.index("events")
    assert api.checks == {"p_dialer_router_1": 2, "p_listener_router_1": 2}  # until it passed
    assert api.execs == []  # `test -f` checks are the engine's stat of the file, no process
    assert "dialer          | hello from p_dialer_1" in project_run.log


def test_a_healthcheck_other_than_test_f_runs_in_the_container() -> None:
    api = FakeEngineAPI(dialer_exit=0)
    document = golden()
    for service in document["services"].values():
        if "healthcheck" in service:
            service["healthcheck"]["test"] = ["CMD-SHELL", "test -f /tmp/setup-done"]
    assert Project(FakeClient(api), plan_project("p", document)).up(timeout=30).exit_code == 0
    assert sorted(set(api.execs)) == ["p_dialer_router_1", "p_listener_router_1"]


def test_a_checked_path_that_is_a_symlink_or_not_a_file_is_not_taken_for_a_file() -> None:
    api = FakeEngineAPI(dialer_exit=0)
    api.file_mode = 1 << 27 | 0o777  # a symlink: only `test -f` itself can follow it
    assert Project(FakeClient(api), plan_project("p", golden())).up(timeout=30).exit_code == 0
    assert api.execs  # the check fell back to the test run in the container
    api = FakeEngineAPI(dialer_exit=0)
    api.file_mode = 1 << 31 | 0o755  # a directory: never ready
    project_run = Project(FakeClient(api), plan_project(
        "p", _with_interval(golden(), {"interval": "10ms", "timeout": "2s", "retries": 3}))).up(
        timeout=1)
    assert project_run.failure is not None and "not ready" in project_run.failure


def test_file_test_recognises_only_test_f_with_an_absolute_path() -> None:
    assert file_test(["CMD", "test", "-f", "/tmp/setup-done"]) == "/tmp/setup-done"
    assert file_test(["CMD", "test", "-e", "/tmp/setup-done"]) is None
    assert file_test(["CMD", "test", "-f", "setup-done"]) is None
    assert file_test(["CMD-SHELL", "test -f /tmp/setup-done"]) is None


def test_a_service_other_than_the_dialer_stopping_first_is_a_failure_with_its_name() -> None:
    api = FakeEngineAPI(first_to_die="listener")
    project_run = Project(FakeClient(api), plan_project("p", golden())).up(timeout=30)
    assert project_run.exit_code is None
    assert project_run.failure == "listener exited 1 before the dialer finished"


def test_an_upstream_client_joins_its_holders_namespace_created_and_started_after_it() -> None:
    api = FakeEngineAPI(dialer_exit=0)
    host_configs: dict[str, dict] = {}
    create = api.create_container

    def recording_create(image, name, **kwargs):
        host_configs[name] = kwargs
        return create(image, name, **kwargs)
    api.create_container = recording_create
    plan = plan_project("p", golden("upstream-x-ours-tcp.yaml"))
    project_run = Project(FakeClient(api), plan).up(timeout=30)
    assert project_run.exit_code == 0
    dialer = host_configs["p_dialer_1"]
    assert dialer["host_config"]["network_mode"] == "container:p_dialer_netns_1"
    assert dialer["networking_config"] is None and dialer["command"] == ["hole-punch-client"]
    assert dialer["entrypoint"] is None  # the image's own (none): only the command is given
    assert host_configs["p_redis_1"]["entrypoint"] == ["/usr/local/bin/holepunch-keyspace-proxy"]
    calls = api.calls
    assert calls.index("create p_dialer_netns_1") < calls.index("create p_dialer_1")
    assert calls.index("start p_dialer_netns_1") < calls.index("start p_dialer_1")
    assert "connect p_redis_1 hole-punch-network" in calls
    # the client waits for its router, its namespace and its redis, each checked until it passed
    assert api.checks == {"p_dialer_router_1": 2, "p_listener_router_1": 2,
                          "p_dialer_netns_1": 2, "p_redis_1": 2}


class FakeStreamingAPI(FakeEngineAPI):
    """The fake engine, with log streams: each router writes `lines` lines of output, then its
    stream stays open (as a running container's does) until it is closed. Its healthcheck
    passes only after its last line; `exits` names a router that stops instead."""

    def __init__(self, lines: int = 3, exits: str | None = None) -> None:
        super().__init__()
        self.lines, self.exits = lines, exits
        self.written: dict[str, int] = {}

    def logs(self, container, stream=False, **kwargs):
        if not stream:
            return super().logs(container)
        return FakeLogStream(self, container)

    def inspect_container(self, container):
        if self.exits and container.endswith(f"_{self.exits}_1") and \
                self.written.get(container, 0) >= self.lines:
            return {"State": {"Running": False, "ExitCode": 3}}
        return {"State": {"Running": True}}

    def passes(self, container) -> bool:
        return self.written.get(container, 0) >= self.lines


class FakeLogStream:
    def __init__(self, api: FakeStreamingAPI, container: str) -> None:
        import threading
        self.api, self.container, self.closed = api, container, threading.Event()

    def __iter__(self):
        for _ in range(self.api.lines):
            self.api.written[self.container] = self.api.written.get(self.container, 0) + 1
            yield b"router: a step of its set-up\n"
        self.closed.wait()  # open until closed, as a running container's stream

    def close(self) -> None:
        self.closed.set()


# An interval no test could wait out: a check must follow the router's output, not the clock.
HOUR = {"interval": "3600s", "timeout": "2s", "retries": 120}


def _with_interval(document: dict, healthcheck: dict) -> dict:
    for service in document["services"].values():
        if "healthcheck" in service:
            service["healthcheck"] = {"test": service["healthcheck"]["test"], **healthcheck}
    return document


def _up_in_thread(project: Project):
    import threading
    result = {}
    thread = threading.Thread(target=lambda: result.update(run=project.up(timeout=3600)),
                              daemon=True)
    thread.start()
    thread.join(30)  # not a speed figure: whether it ends at all before the hour-long interval
    return result.get("run")


def test_a_healthcheck_runs_on_the_routers_output_not_on_a_timer() -> None:
    api = FakeStreamingAPI(lines=3)
    project = Project(FakeClient(api), plan_project("p", _with_interval(golden(), HOUR)))
    project_run = _up_in_thread(project)
    assert project_run is not None, "waited for the healthcheck's interval"
    assert project_run.exit_code == 0
    assert api.checks["p_dialer_router_1"] <= 1 + 3  # at start, then once per output at most
    assert "start p_dialer_1" in api.calls and "start p_listener_1" in api.calls


def test_a_router_that_exits_before_it_is_ready_fails_the_test_with_its_name() -> None:
    api = FakeStreamingAPI(lines=2, exits="listener_router")
    project = Project(FakeClient(api), plan_project("p", _with_interval(golden(), HOUR)))
    project_run = _up_in_thread(project)
    assert project_run is not None
    assert project_run.failure == "listener_router exited 3 before it was ready"
    assert "start p_listener_1" not in api.calls
