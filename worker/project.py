"""A test's compose project, brought up and down through the Docker engine's API.

worker.compose writes each test as a compose document; that document stays the one description
of a test (it goes to the cache and the test-pass zip, and docker-compose 1.29 accepts it as it
is). This module runs it the way `docker-compose up --abort-on-container-exit` would, with
compose's container and network names and labels, so `docker-compose -p NAME ps|logs|down`
still know the project.

Why not docker-compose itself: Debian's docker-compose 1.29 is a Python program that spends
about a second of CPU starting, for `up` and again for `down`, on every test. On a two-core
host running four tests at once that is CPU the tests need, and it is a second before the first
test of a pass can start. Here the worker's own engine client does the same calls, the
networks, creates and removals in parallel.

One deliberate difference: a healthcheck is run by this module while its service starts, not
handed to the engine. The engine runs it for the container's whole life, each check a runc
exec: measured here, eight routers checked every 250 ms kept about one of the two cores busy
for as long as their tests ran. Run here it costs a few checks per router, and a dependent
service still starts only once the check has passed (`condition: service_healthy`).

Only the keys worker.compose writes are read; any other key raises, so the document and this
reading of it cannot drift apart silently.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import docker
from docker.errors import APIError, NotFound
from docker.types import IPAMConfig, IPAMPool

from cluster.errors import ConfigError
from worker.phases import Phases

# The labels docker-compose 1.29 puts on what it creates, so it recognises our projects.
PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NETWORK = "com.docker.compose.network"
ONE_OFF = "com.docker.compose.oneoff"
NUMBER = "com.docker.compose.container-number"

SERVICE_KEYS = frozenset({"image", "init", "cap_add", "environment", "networks", "depends_on",
                          "stop_grace_period", "labels", "sysctls", "healthcheck",
                          "network_mode", "entrypoint", "command"})
# `network_mode: service:NAME`: the service joins NAME's network namespace (worker.contracts).
_SERVICE_MODE = "service:"
HEALTHCHECK_KEYS = frozenset({"test", "interval", "timeout", "retries"})
NETWORK_KEYS = frozenset({"driver", "driver_opts", "ipam", "labels", "external", "name"})
CONDITIONS = ("service_started", "service_healthy")
NO_HEALTHCHECK = {"test": ["NONE"]}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNIT_NS = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
            "h": 3_600_000_000_000}


# The type bits of a Go os.FileMode, as the engine's stat of a path in a container gives it.
GO_MODE_SYMLINK = 1 << 27
GO_MODE_TYPE = (1 << 31) | GO_MODE_SYMLINK | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)


def file_test(test: list[str]) -> str | None:
    """The path a `test -f PATH` healthcheck asks about (the router's, the helpers'), else None.
    Such a check is answered from the engine's stat of the path, not by a process run in the
    container: a runc exec per check was most of a router's readiness cost with four tests at
    once."""
    if len(test) == 4 and test[:3] == ["CMD", "test", "-f"] and test[3].startswith("/"):
        return test[3]
    return None


def duration_ns(text: str | int | float) -> int:
    """A compose duration (`250ms`, `2s`, `1m30s`) in nanoseconds, as the engine takes it."""
    if isinstance(text, (int, float)):
        return int(text * 1_000_000_000)
    parts = _DURATION.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text.strip():
        raise ConfigError("compose document", "duration", f"expected e.g. 250ms or 2s, got {text!r}")
    return sum(int(float(number) * _UNIT_NS[unit]) for number, unit in parts)


@dataclass(frozen=True)
class NetworkPlan:
    key: str                    # its name in the document
    name: str                   # its name on the engine
    external: bool
    driver: str = "bridge"
    options: dict[str, str] = field(default_factory=dict)
    subnets: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServicePlan:
    name: str
    container: str
    image: str
    environment: dict[str, str]
    labels: dict[str, str]
    init: bool
    cap_add: tuple[str, ...]
    sysctls: dict[str, str]
    stop_timeout: int | None
    healthcheck: dict[str, Any] | None
    networks: tuple[tuple[str, str | None], ...]   # (engine network name, fixed IPv4 or None)
    depends_on: dict[str, str]                     # service -> condition
    joins: str | None = None        # the service whose network namespace this one shares
    entrypoint: tuple[str, ...] | None = None      # None: the image's own
    command: tuple[str, ...] | None = None         # None: the image's own
    stdin_open: bool = False        # a standby container (worker.warmrouters) reads its settings there


def _interval_s(service: ServicePlan) -> float:
    """The healthcheck interval of a service another waits on as service_healthy."""
    assert service.healthcheck is not None, f"{service.name}: service_healthy with no healthcheck"
    return float(service.healthcheck["interval"]) / 1e9


@dataclass(frozen=True)
class ProjectPlan:
    name: str
    networks: tuple[NetworkPlan, ...]
    services: tuple[ServicePlan, ...]

    def service(self, name: str) -> ServicePlan:
        return next(s for s in self.services if s.name == name)

    def waves(self) -> list[list[ServicePlan]]:
        """Services in start order: each wave depends only on earlier ones."""
        done: set[str] = set()
        waves = []
        pending = list(self.services)
        while pending:
            wave = [s for s in pending if set(s.depends_on) <= done]
            if not wave:
                raise ConfigError("compose document", "depends_on",
                                  f"a cycle or an unknown service among {[s.name for s in pending]}")
            waves.append(wave)
            done |= {s.name for s in wave}
            pending = [s for s in pending if s.name not in done]
        return waves


def _check_keys(where: str, data: dict, known: frozenset[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError("compose document", where,
                          f"worker.project cannot run key(s) {', '.join(unknown)}")


def plan_project(name: str, document: dict[str, Any]) -> ProjectPlan:
    """What the engine must create for `document` as project `name` (pure: no engine)."""
    _check_keys("(top level)", document, frozenset({"services", "networks"}))
    networks = []
    for key, spec in (document.get("networks") or {}).items():
        spec = spec or {}
        _check_keys(f"networks.{key}", spec, NETWORK_KEYS)
        external = bool(spec.get("external"))
        configs = (spec.get("ipam") or {}).get("config") or []
        networks.append(NetworkPlan(
            key=key, name=spec.get("name", key) if external else f"{name}_{key}", external=external,
            driver=spec.get("driver", "bridge"), options=dict(spec.get("driver_opts") or {}),
            subnets=tuple(c["subnet"] for c in configs),
            labels={**(spec.get("labels") or {}), PROJECT: name, NETWORK: key}))
    engine_name = {n.key: n.name for n in networks}
    services = []
    for service, spec in document["services"].items():
        _check_keys(f"services.{service}", spec, SERVICE_KEYS)
        joins = _joined_service(service, spec)
        if joins is not None and spec.get("networks"):
            raise ConfigError("compose document", f"services.{service}.networks",
                              "a service with network_mode: service:... has no networks of its own")
        attached = spec.get("networks") or []
        if isinstance(attached, list):
            attached = {key: {} for key in attached}
        service_networks = []
        for key, options in attached.items():
            if key not in engine_name:
                raise ConfigError("compose document", f"services.{service}.networks",
                                  f"network {key!r} is not declared")
            options = options or {}
            _check_keys(f"services.{service}.networks.{key}", options, frozenset({"ipv4_address"}))
            service_networks.append((engine_name[key], options.get("ipv4_address")))
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        conditions = {dep: (cond or {}).get("condition", "service_started")
                      for dep, cond in depends.items()}
        if joins is not None:
            conditions.setdefault(joins, "service_started")  # its namespace must exist first
        for dep, condition in conditions.items():
            if condition not in CONDITIONS:
                raise ConfigError("compose document", f"services.{service}.depends_on.{dep}",
                                  f"expected one of {', '.join(CONDITIONS)}, got {condition!r}")
        health = spec.get("healthcheck")
        if health is not None:
            _check_keys(f"services.{service}.healthcheck", health, HEALTHCHECK_KEYS)
            health = {"test": list(health["test"]),
                      "interval": duration_ns(health.get("interval", "30s")),
                      "timeout": duration_ns(health.get("timeout", "30s")),
                      "retries": int(health.get("retries", 3))}
        grace = spec.get("stop_grace_period")
        services.append(ServicePlan(
            name=service, container=f"{name}_{service}_1", image=spec["image"],
            environment={k: str(v) for k, v in (spec.get("environment") or {}).items()},
            labels={**(spec.get("labels") or {}), PROJECT: name, SERVICE: service,
                    ONE_OFF: "False", NUMBER: "1"},
            init=bool(spec.get("init")), cap_add=tuple(spec.get("cap_add") or ()),
            sysctls={k: str(v) for k, v in (spec.get("sysctls") or {}).items()},
            stop_timeout=None if grace is None else max(1, round(duration_ns(grace) / 1e9)),
            healthcheck=health, networks=tuple(service_networks), depends_on=conditions,
            joins=joins, entrypoint=_argv(service, spec, "entrypoint"),
            command=_argv(service, spec, "command")))
    plan = ProjectPlan(name, tuple(networks), tuple(services))
    plan.waves()  # raises on a dependency cycle or an unknown service
    return plan


def _joined_service(service: str, spec: dict[str, Any]) -> str | None:
    mode = spec.get("network_mode")
    if mode is None:
        return None
    if not isinstance(mode, str) or not mode.startswith(_SERVICE_MODE) \
            or not mode[len(_SERVICE_MODE):]:
        raise ConfigError("compose document", f"services.{service}.network_mode",
                          f"expected service:<name>, got {mode!r}")
    return mode[len(_SERVICE_MODE):]


def _argv(service: str, spec: dict[str, Any], key: str) -> tuple[str, ...] | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
        raise ConfigError("compose document", f"services.{service}.{key}",
                          f"expected a list of strings (exec form), got {value!r}")
    return tuple(value)


@dataclass
class ProjectRun:
    """How `up` ended: `exit_code` of the main service, or why it has none."""

    exit_code: int | None = None
    failure: str | None = None     # the project could not run the main service to its end
    timed_out: bool = False
    log: str = ""


def standby_settings(environment: dict[str, str]) -> bytes:
    """What a standby container reads on stdin to start as `environment` says: NAME=VALUE lines,
    then an empty line (router/router.sh, ROUTER_STANDBY=stdin)."""
    for name, value in environment.items():
        if "\n" in name or "=" in name or "\n" in value or "\r" in value:
            raise ConfigError("compose document", f"environment.{name}",
                              "a standby container takes one NAME=VALUE line per setting: "
                              "no '=' in the name, no line break in either")
    return "".join(f"{name}={value}\n" for name, value in environment.items()).encode() + b"\n"


class Project:
    """One compose project on one engine: `up` until the main service exits, then `down`.

    `adopted` names services whose container runs already, in standby (worker.warmrouters):
    they are not created; their start is the hand-over of their environment on stdin."""

    def __init__(self, client: docker.DockerClient, plan: ProjectPlan, main: str = "dialer",
                 adopted: dict[str, str] | None = None):
        self.api = client.api
        self.plan = plan
        self.main = main
        self.adopted = dict(adopted or {})
        self._ids: dict[str, str] = dict(self.adopted)   # service -> container id

    def up(self, timeout: float, prepare: Callable[[], None] = lambda: None,
           phases: Phases | None = None, running: Callable[[], None] = lambda: None) -> ProjectRun:
        """Create and start everything, then wait until any container stops (as
        `--abort-on-container-exit` does) or `timeout` passes. `prepare` runs once the services
        without dependencies have started and before any service that depends on them: the
        harness hands the test its relay address there, while the routers set up. `running`
        once every service has started. `phases` records where the time went."""
        phases = phases or Phases()
        deadline = time.monotonic() + timeout
        run = ProjectRun()
        since = int(time.time()) - 1  # the engine's clock is this machine's: events from here on
        with phases("networks"):
            self._parallel([partial(self._create_network, n) for n in self.plan.networks
                            if not n.external])
        with phases("creates"):
            # A service that joins another's network namespace is created once that one exists.
            self._parallel([partial(self._create, s) for s in self.plan.services
                            if not s.joins and s.name not in self.adopted])
            self._parallel([partial(self._create, s) for s in self.plan.services
                            if s.joins and s.name not in self.adopted])
        readiness = _Readiness(self, deadline)
        try:
            roots = [s for s in self.plan.services if not s.depends_on]
            with phases("starts"):
                self._parallel([partial(self._start, s, readiness) for s in roots])
            with phases("prepare"):
                prepare()  # while the services it started set up
            with phases("ready"):
                failure = readiness.start_dependents(
                    [s for s in self.plan.services if s.depends_on])
        finally:
            readiness.close()
        if failure:
            run.failure = failure
            run.timed_out = time.monotonic() >= deadline
            run.log = self.logs()
            return run
        running()
        with phases("run"):
            stopped = self._first_stop(since, deadline)
        if stopped is None:
            run.timed_out = True
        elif stopped[0] == self.main:
            run.exit_code = stopped[1]
        else:
            run.failure = f"{stopped[0]} exited {stopped[1]} before the {self.main} finished"
        with phases("logs"):
            run.log = self.logs()
        return run

    def logs(self) -> str:
        """Every service's output, merged in time order, each line prefixed with its service
        (docker-compose's `up` shows the same)."""
        lines: list[tuple[str, str]] = []
        width = max((len(s.name) for s in self.plan.services), default=0)

        def read(container: str) -> bytes:
            try:
                return self.api.logs(container, stdout=True, stderr=True, timestamps=True)
            except (NotFound, APIError):
                return b""
        present = [s for s in self.plan.services if s.name in self._ids]
        with ThreadPoolExecutor(max_workers=max(1, len(present))) as pool:  # one call each
            raws = list(pool.map(read, [self._ids[s.name] for s in present]))
        for service, raw in zip(present, raws, strict=True):
            for line in raw.decode(errors="replace").splitlines():
                stamp, _, text = line.partition(" ")
                lines.append((stamp, f"{service.name:<{width}} | {text}"))
        return "".join(text + "\n" for _, text in sorted(lines, key=lambda entry: entry[0]))

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _parallel(calls: list[Callable[[], object]]) -> None:
        if len(calls) <= 1:
            for call in calls:
                call()
            return
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            for future in [pool.submit(call) for call in calls]:
                future.result()

    def _create_network(self, network: NetworkPlan) -> None:
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=s) for s in network.subnets]) \
            if network.subnets else None
        self.api.create_network(network.name, driver=network.driver, options=network.options,
                                ipam=ipam, labels=network.labels, check_duplicate=True)

    def _create(self, service: ServicePlan) -> None:
        api = self.api
        first: tuple[str | None, str | None] = service.networks[0] if service.networks else (None, None)
        others = service.networks[1:]

        def endpoint(address: str | None):
            return api.create_endpoint_config(ipv4_address=address, aliases=[service.name])

        # types-docker takes one EndpointConfig here; docker-py takes {network: EndpointConfig}
        networking = (api.create_networking_config({first[0]: endpoint(first[1])})  # type: ignore[arg-type]
                      if first[0] else None)
        network_mode = first[0]
        if service.joins:
            network_mode, networking = f"container:{self._ids[service.joins]}", None
        host_config = api.create_host_config(
            init=service.init, cap_add=list(service.cap_add), sysctls=service.sysctls or None,
            network_mode=network_mode)
        # The engine runs no healthcheck, not even the image's own: `_healthy` runs it.
        created = api.create_container(
            service.image, name=service.container, environment=service.environment,
            labels=service.labels, host_config=host_config, networking_config=networking,
            healthcheck=NO_HEALTHCHECK, stop_timeout=service.stop_timeout,
            entrypoint=list(service.entrypoint) if service.entrypoint is not None else None,
            command=list(service.command) if service.command is not None else None,
            stdin_open=service.stdin_open)

        self._ids[service.name] = created["Id"]
        for network, address in others:
            api.connect_container_to_network(created["Id"], network, ipv4_address=address,
                                             aliases=[service.name])

    @property
    def containers(self) -> dict[str, str]:
        """Service -> container id, of what exists so far (the adopted included)."""
        return dict(self._ids)

    def start_detached(self) -> dict[str, str]:
        """Create and start every service, all at once, and leave them running (a standby
        container of worker.warmrouters); service -> container id."""
        self._parallel([partial(self._create, s) for s in self.plan.services])
        self._parallel([partial(self.api.start, self._ids[s.name]) for s in self.plan.services])
        return dict(self._ids)

    def _start(self, service: ServicePlan, readiness: _Readiness) -> None:
        if service.name in self.adopted:
            self._hand_settings(service)
        else:
            self.api.start(self._ids[service.name])
        readiness.started(service)

    def _hand_settings(self, service: ServicePlan) -> None:
        """An adopted service's start: its environment, written to the standby's stdin."""
        payload = standby_settings(service.environment)
        attached = self.api.attach_socket(self._ids[service.name], params={"stdin": 1, "stream": 1})
        sock = getattr(attached, "_sock", attached)  # the raw socket under docker-py's wrapper
        try:
            sock.sendall(payload)
        finally:
            sock.close()

    def _healthy(self, service: ServicePlan) -> bool:
        """One run of the service's healthcheck test in its container: did it pass?"""
        test = service.healthcheck["test"] if service.healthcheck else ["NONE"]
        watched = file_test(test)
        if watched is not None:
            regular = self._regular_file(self._ids[service.name], watched)
            if regular is not None:
                return regular
        kind, command = test[0], test[1:]
        if kind == "CMD-SHELL":
            command = ["/bin/sh", "-c", " ".join(command)]
        elif kind != "CMD":
            raise ConfigError("compose document", f"services.{service.name}.healthcheck.test",
                              f"service_healthy needs a CMD or CMD-SHELL test, got {test!r}")
        try:
            check = self.api.exec_create(self._ids[service.name], command, stdout=False,
                                         stderr=False)
            self.api.exec_start(check["Id"])
            return self.api.exec_inspect(check["Id"]).get("ExitCode") == 0
        except APIError:
            return False  # the container is stopping: the next state check says so
    def _regular_file(self, container: str, path: str) -> bool | None:
        """Is `path` a regular file in the container, as `test -f` asks: from the engine's stat
        of it (no process in the container), or None when only the test can tell (a symlink)."""
        try:
            stream, stat = self.api.get_archive(container, path)
            for _ in stream:  # the file itself: an empty one is a tar header
                pass
        except NotFound:
            return False
        except APIError:
            return False  # the container is stopping: the next state check says so
        mode = int((stat or {}).get("mode", 0))
        if mode & GO_MODE_SYMLINK:
            return None
        return not mode & GO_MODE_TYPE

    def _first_stop(self, since: int, deadline: float) -> tuple[str, int] | None:
        """(service, exit code) of the first container of the project to stop, or None if
        none stops before `deadline`. From the engine's events, so nothing is polled."""
        until = math.ceil(time.time() + max(0.0, deadline - time.monotonic()))
        # By container: an adopted container carries its standby's labels, not the project's.
        services = {container: service for service, container in self._ids.items()}
        events = self.api.events(since=since, until=until, decode=True, filters={
            "type": "container", "event": "die", "container": sorted(services)})
        try:
            for event in events:
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                service = services.get(event.get("id") or (event.get("Actor") or {}).get("ID", ""))
                if service:
                    return service, int(attributes.get("exitCode", -1))
        finally:
            events.close()
        return None


class _Readiness:
    """Which services have started and which passed their healthcheck, told as it happens.

    A service that another needs healthy is watched from its start: its healthcheck runs at
    once and again each time the container writes output (a router writes a line as it reaches
    each step of its set-up, the last one once it is ready), or after the check's interval when
    it writes nothing; its log stream ending means it stopped. A dependent service starts as
    soon as its own dependencies are met, each in its own thread: nothing is polled on a timer
    while output comes.
    """

    def __init__(self, project: Project, deadline: float):
        self.project = project
        self.deadline = deadline
        self.changed = threading.Condition()
        self.ready: dict[str, set[str]] = {}      # service -> conditions it meets
        self.failed: dict[str, str] = {}          # service -> why it can never be ready
        self.threads: list[threading.Thread] = []
        self.streams: list[Any] = []
        self.closed = False
        self.closing = threading.Event()
        self.watched = {dep for s in project.plan.services for dep, cond in s.depends_on.items()
                        if cond == "service_healthy"}

    def started(self, service: ServicePlan) -> None:
        self._meet(service.name, "service_started")
        if service.name in self.watched:
            self._thread(lambda: self._watch(service), f"watch {service.name}")

    def start_dependents(self, services: list[ServicePlan]) -> str | None:
        """Start each of `services` once its dependencies are met; the first reason one cannot
        start (a dependency exited, the deadline passed), or None once all have started."""
        problems: list[str] = []
        starting = [self._thread(partial(self._start_when_ready, service, problems),
                                 f"start {service.name}") for service in services]
        for thread in starting:
            thread.join()
        return problems[0] if problems else None

    def close(self) -> None:
        self.closing.set()
        with self.changed:
            self.closed = True
            self.changed.notify_all()
        for stream in self.streams:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - already closed by its end
                pass
        for thread in self.threads:
            thread.join(timeout=5)

    # ------------------------------------------------------------------ internals

    def _thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, daemon=True, name=name)
        self.threads.append(thread)
        thread.start()
        return thread

    def _meet(self, name: str, condition: str) -> None:
        with self.changed:
            self.ready.setdefault(name, set()).add(condition)
            self.changed.notify_all()

    def _fail(self, name: str, why: str) -> None:
        with self.changed:
            self.failed.setdefault(name, why)
            self.changed.notify_all()

    def _start_when_ready(self, service: ServicePlan, problems: list[str]) -> None:
        needs = service.depends_on

        def settled() -> bool:
            return self.closed or any(dep in self.failed for dep in needs) \
                or all(cond in self.ready.get(dep, ()) for dep, cond in needs.items())
        with self.changed:
            self.changed.wait_for(settled, timeout=max(0.0, self.deadline - time.monotonic()))
            failed = [self.failed[dep] for dep in needs if dep in self.failed]
            waiting = [dep for dep, cond in needs.items() if cond not in self.ready.get(dep, ())]
        if failed or waiting:
            problems.append(failed[0] if failed else
                            f"{', '.join(waiting)} not ready before the timeout")
            return
        try:
            self.project._start(service, self)
        except APIError as exc:
            problems.append(f"{service.name} could not start: {exc.explanation or exc}")

    def _watch(self, service: ServicePlan) -> None:
        """Run `service`'s healthcheck until it passes, on each output and at its interval."""
        api, container = self.project.api, self.project._ids[service.name]
        interval = max(0.01, service.healthcheck["interval"] / 1e9) if service.healthcheck else 0.25
        output: queue.Queue[bool] = queue.Queue()
        try:
            stream = api.logs(container, stream=True, follow=True, stdout=True, stderr=True)
            self.streams.append(stream)
        except (NotFound, APIError):
            stream = None

        def read() -> None:
            if stream is None:
                return
            try:
                for _ in stream:
                    output.put(True)
            except Exception:  # noqa: BLE001 - the stream was closed under it
                pass
            output.put(False)  # the stream ended: the container stopped (or the engine hung up)
        if stream is not None:
            threading.Thread(target=read, daemon=True, name=f"logs {service.name}").start()
        streaming = stream is not None
        while not self.closing.is_set():
            state = api.inspect_container(container)["State"]
            if not state.get("Running"):
                self._fail(service.name, f"{service.name} exited {state.get('ExitCode')} "
                                         "before it was ready")
                return
            if self.project._healthy(service):
                self._meet(service.name, "service_healthy")
                return
            if time.monotonic() >= self.deadline:
                return  # the dependents say "not ready before the timeout"
            try:
                wait = min(interval, max(0.0, self.deadline - time.monotonic()))
                if not streaming:  # no output to wake on: the check's own interval
                    self.closing.wait(wait)
                    continue
                streaming = output.get(timeout=wait)
                while streaming and not output.empty():  # a burst of output: one check
                    streaming = output.get_nowait()
            except queue.Empty:
                pass
