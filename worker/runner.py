"""Run one test on this host: bring its compose project up, read the dialer's verdict, always
tear it down.

A test failure is a returned record; only infrastructure faults raise (InfrastructureError).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import redis
from docker.errors import DockerException, NotFound

from cluster.errors import InfrastructureError
from cluster.evidence import CaptureMode
from cluster.imageid import image_ref
from cluster.labels import REDIS_ADDR, SERVICES, test_labels
from cluster.models import Contract, PeerRecord, Status, TestRecord, as_reason, log_file_name
from cluster.nat import DEFAULT_PRESET, PRESETS, WORKER_CARRIER_POOL
from cluster.tasks import LOG_LIMIT, RunRequest
from worker.captures import read_evidence
from worker.compose import TestSpec, compose_for, project_name, render
from worker.contracts import command_for
from worker.host import Host
from worker.hosts import owner
from worker.lanpool import LanNetworks
from worker.outcome import Outcome, outcome_of
from worker.phases import Phases
from worker.project import Project, plan_project
from worker.reaper import reap_tests
from worker.services import Services
from worker.steps import stopped_at
from worker.subnets import lan_pair
from worker.teardown import Teardowns
from worker.warmrouters import WARM_MARK, WarmCell, WarmRouters, adoption, remove_routers

# Teardown reaps by label until a pass finds nothing (an engine still finishing a create).
REAP_ATTEMPTS = 4
REAP_SETTLE_S = 0.5
DEFERRED_SIGNALS = {signal.SIGTERM, signal.SIGINT}

log = logging.getLogger(__name__)


@dataclass
class Execution:
    """What running one compose project gave, before it is judged."""

    exit_code: int | None        # the dialer's; None when it never finished
    log: str                     # every service's output
    dialer_stdout: str
    dialer_stderr: str
    compose_text: str
    compose_file: str            # docker-compose/<sha256>.yaml
    seconds: float
    up_s: float | None = None    # compose up until the dialer started
    run_s: float | None = None   # the dialer's own run
    down_s: float | None = None
    leftovers: list[str] = field(default_factory=list)  # what only a second pass removed
    failure: str | None = None   # why the dialer never finished (a router died, ...)
    timed_out: bool = False
    evidence: dict[str, bytes] = field(default_factory=dict)  # captures/... -> bytes

    def outcome(self):
        verdict = self.verdict()
        return verdict.rtt_ms, verdict.reason

    def verdict(self) -> Outcome:
        """The dialer's outcome, with the timings its result line carried."""
        if self.timed_out:
            return Outcome(reason="timeout")
        if self.exit_code is None:
            return Outcome(reason=self.failure or "the dialer never finished")
        return outcome_of(self.exit_code, self.dialer_stdout)


@dataclass(frozen=True)
class RunOutput:
    record: TestRecord
    log: str       # every service's output, for logs/<test>.log in the pass snapshot
    compose: str   # the compose file's text, for docker-compose/<sha256>.yaml in the snapshot
    evidence: dict[str, bytes] = field(default_factory=dict)  # captures and key logs, by name


def _docker_time(text: str) -> float | None:
    if not text or text.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00")  # ns -> us
    return datetime.fromisoformat(text).timestamp()


DIALER_FILTER = "com.docker.compose.service=dialer"


@dataclass(frozen=True)
class DialerReport:
    stdout: str = ""              # the verdict is its last line
    stderr: str = ""              # the dialer's own log
    up_s: float | None = None     # compose up until the dialer started
    run_s: float | None = None    # the dialer's own run


def read_dialer(client, project: str, up_started: float) -> DialerReport:
    """What the project's dialer printed, and when it ran.

    Through the engine's API, by the labels Compose puts on the container: a `docker-compose ps`
    here cost a second of CPU per test (several seconds of wall time on a loaded host).
    """
    try:
        found = client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={project}", DIALER_FILTER]})
        if not found:
            return DialerReport()
        dialer = found[0]
        stdout = dialer.logs(stdout=True, stderr=False).decode(errors="replace")
        stderr = dialer.logs(stdout=False, stderr=True).decode(errors="replace")
        state = dialer.attrs.get("State") or {}
    except DockerException:
        return DialerReport()  # gone already: the verdict reads "dialer printed nothing"
    start, end = _docker_time(state.get("StartedAt", "")), _docker_time(state.get("FinishedAt", ""))
    up_s = start - up_started if start else None
    run_s = end - start if start and end and end >= start else None
    return DialerReport(stdout, stderr, up_s, run_s)


def execute(spec: TestSpec, ready: Callable[[], Services], host: Host,
            timeout: float, evidence_on_pass: bool = True,
            phases: Phases | None = None, teardowns: Teardowns | None = None,
            then: Callable[[], None] = lambda: None, cell: WarmCell | None = None,
            warm: WarmRouters | None = None) -> Execution:
    """Write the compose file and run it; just before its clients start, `ready()` gives the
    host's services (Redis, and the relay with its addresses: they may still have been starting
    while the routers set up) and the relay's address goes to the test. Always torn down, then
    `then()` runs (the lease's release). With `teardowns`, a test that ran to its end is torn
    down in the background (worker.teardown) once its logs and evidence are read; one cut short
    (a signal, an engine error) is torn down here, before the exception goes on.

    `cell`: routers started in standby for this test (worker.warmrouters), on its lease: adopted
    when they fit its plan, else removed first. `warm`: once this test's clients run, it starts
    the next test's routers."""
    started = time.monotonic()
    phases = phases or Phases()
    try:
        with phases("compose"):
            document = compose_for(spec)
            text = render(document)
            digest, _ = host.cache.store("docker-compose", text, ".yaml")
            plan = plan_project(spec.project, document)
    except BaseException:
        if cell is not None:
            remove_routers(host.services.client, cell)
        then()  # nothing was created yet
        raise
    execution = Execution(None, "", "", "", text, f"docker-compose/{digest}.yaml", 0.0)

    def hand_over_relay() -> None:
        services = ready()
        relay = services.relay_addrs[spec.transport]
        services.redis().rpush(f"{spec.test_key}:RELAY_{spec.transport.upper()}_ADDRESS",
                               relay, relay)

    client = host.services.client
    adopted = adoption(plan, cell) if cell is not None else None
    if cell is not None and adopted is None:
        with phases("warm-misfit"):
            remove_routers(client, cell)  # the test starts its own routers on the lease
    note = ""
    if adopted:
        note = ("[holepunch] routers: started before the test in standby "
                "(worker.warmrouters); their settings were handed over on stdin\n")
        log.info("%s %s: adopted", WARM_MARK, spec.test_name)
    project = Project(client, plan, adopted=adopted)

    def running() -> None:
        started_all()
        if warm is not None:
            warm.refill(host, spec, plan, pool_networks(spec))
    read = False  # the logs, verdict and evidence are read: the project may go in the background
    # Until its clients run, this test is starting: teardowns on this host wait (worker.teardown).
    started_all = teardowns.begin_start() if teardowns is not None else (lambda: None)
    try:
        up_started = time.time()
        try:
            run = project.up(timeout, hand_over_relay, phases, running=running)
        finally:
            started_all()
        execution.exit_code, execution.failure = run.exit_code, run.failure
        execution.log = note + run.log
        execution.timed_out = run.timed_out
        if run.timed_out:
            execution.log += f"\n[holepunch] timeout after {timeout:.0f} s: project killed\n"
        with phases("dialer"):
            dialer = read_dialer(client, spec.project, up_started)
        execution.dialer_stdout, execution.dialer_stderr = dialer.stdout, dialer.stderr
        execution.up_s, execution.run_s = dialer.up_s, dialer.run_s
        if spec.evidence and (evidence_on_pass or not execution.verdict().passed):
            execution.evidence = read_evidence(client, project.containers, spec.test_name)
        read = True
    finally:
        if teardowns is not None and read:
            # The wait is for the previous test's teardown, if it is still running; a signal
            # meanwhile is held until this one is handed over (the process joins it on exit).
            with termination_deferred():
                phases.add("teardown", teardowns.hand_over(
                    spec.test_name, partial(_tear_down_quietly, spec, host, then, adopted)))
        else:
            with termination_deferred(), phases("teardown"):
                try:
                    _tear_down(spec, host, execution, adopted)
                finally:
                    then()
    execution.seconds = time.monotonic() - started
    return execution


def pool_networks(spec: TestSpec) -> LanNetworks | None:
    """The test's pool LAN networks, or None when its project makes its own."""
    if spec.dialer_lan_network and spec.listener_lan_network:
        return LanNetworks(spec.dialer_lan_network, spec.listener_lan_network)
    return None


@contextmanager
def termination_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT back until the block is done, then deliver them.

    Celery terminates a running late-ack task when the broker connection drops: billiard's
    handler turns the first SIGTERM into SystemExit (so this teardown runs) and leaves the next
    one fatal. A second signal during `down` would leave the project half removed.

    The handlers are swapped for one that only notes the signal, rather than the signals
    blocked: a block holds for the calling thread only, and the kernel hands a signal sent to
    the process to any thread that does not block it (the teardown's own removal threads), whose
    Python handler then runs in the main thread at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set, and only run, in the main thread
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
                for sig in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)  # now handled as it would have been


def _tear_down(spec: TestSpec, host: Host, execution: Execution,
               adopted: dict[str, str] | None = None) -> None:
    """Remove the project's containers and networks by label until a pass finds nothing, then
    the test's Redis keys.

    Runs on every exit, a terminated task's too: a create cut short by the signal may still be
    in flight in the engine and land after the first pass listed the project.
    """
    down_started = time.monotonic()
    for container in (adopted or {}).values():  # warm routers: their labels are their standby's
        try:
            host.services.client.api.remove_container(container, force=True, v=True)
        except NotFound:
            pass
        except DockerException as exc:
            execution.log += f"\n[holepunch] could not remove router {container[:12]}: {exc}\n"
    for attempt in range(REAP_ATTEMPTS):
        removed = reap_tests(host.services.client, host.name, project=spec.project)
        if not removed:
            break
        if attempt:
            execution.leftovers += removed
        time.sleep(REAP_SETTLE_S * attempt)
    execution.down_s = time.monotonic() - down_started
    if execution.leftovers:
        execution.log += f"\n[holepunch] removed after down: {', '.join(execution.leftovers)}\n"
    redis_ip, _, port = spec.redis_addr.rpartition(":")
    store = redis.Redis(host=redis_ip, port=int(port), socket_timeout=5, socket_connect_timeout=3)
    try:
        for key in store.scan_iter(f"{spec.test_key}:*"):
            store.delete(key)
    except redis.RedisError as exc:  # Redis never came up (the test failed for that already)
        execution.log += f"\n[holepunch] could not remove the test's Redis keys: {exc}\n"


def _tear_down_quietly(spec: TestSpec, host: Host, then: Callable[[], None],
                       adopted: dict[str, str] | None = None) -> None:
    """`_tear_down` where no record is left to note its leftovers in: the worker's log."""
    execution = Execution(None, "", "", "", "", "", 0.0)
    try:
        _tear_down(spec, host, execution, adopted)
    finally:
        then()
    if execution.leftovers or execution.log:
        log.warning("%s: %s", spec.test_name, execution.log.strip())


def spec_for(test_name: str, transport: str, dialer_image: str, listener_image: str,
             router_image: str, run_id: str, services: Services, host: Host, lans,
             delay_ms: int, public_allow: tuple[str, ...] | None = None,
             secure_channel: str | None = None, muxer: str | None = None,
             evidence: bool = False, dialer_nat: str = DEFAULT_PRESET,
             listener_nat: str = DEFAULT_PRESET, dialer_contract: str = "holepunch",
             listener_contract: str = "holepunch", holders_for_ours: bool = True,
             lan_networks: LanNetworks | None = None) -> TestSpec:
    """The compose spec of one run (images by their bare IDs); its project name is also its
    Redis namespace. A cgnat side's carrier network is the /24 of WORKER_CARRIER_POOL that
    matches its LAN's (same lease index): leased with the LANs, never shared. `lan_networks`:
    the lease's pool networks (worker.lanpool), else the project makes its LANs. An
    upstream-contract image is looked at once, for its command."""
    project = project_name(test_name, run_id)
    carriers = lan_pair(WORKER_CARRIER_POOL, lans.index)

    def command(image: str, contract: str) -> tuple[str, ...] | None:
        if contract == "holepunch":
            return None  # ours name their own: no engine call
        try:
            config = host.services.client.api.inspect_image(image_ref(image)).get("Config") or {}
        except DockerException as exc:
            raise InfrastructureError(f"cannot inspect image {image}: {exc}") from exc
        return command_for(config, contract)

    return TestSpec(
        test_name=test_name, pass_id=run_id, dialer_image=image_ref(dialer_image),
        listener_image=image_ref(listener_image), router_image=image_ref(router_image),
        transport=transport, redis_addr=services.redis_addr, test_key=project,
        public_subnet=host.public_subnet, dialer_lan=lans.dialer, listener_lan=lans.listener,
        delay_ms=delay_ms, public_allow=public_allow,
        extra_labels=tuple({**test_labels(host.name, owner()), REDIS_ADDR: services.redis_addr,
                            SERVICES: services.key}.items()),
        secure_channel=secure_channel, muxer=muxer, evidence=evidence, dialer_nat=dialer_nat,
        listener_nat=listener_nat,
        dialer_carrier=carriers.dialer if len(PRESETS[dialer_nat].routers) > 1 else None,
        listener_carrier=carriers.listener if len(PRESETS[listener_nat].routers) > 1 else None,
        dialer_contract=dialer_contract, listener_contract=listener_contract,
        holders_for_ours=holders_for_ours, dialer_command=command(dialer_image, dialer_contract),
        listener_command=command(listener_image, listener_contract),
        dialer_lan_network=lan_networks.dialer if lan_networks else None,
        listener_lan_network=lan_networks.listener if lan_networks else None)


def utc_stamp() -> str:
    """Now, as UTC ISO with milliseconds: `2026-12-03T07:40:01.123Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_test(request: RunRequest, host: Host, evidence_on_pass: bool = True,
             phases: Phases | None = None, teardowns: Teardowns | None = None,
             warm: WarmRouters | None = None) -> RunOutput:
    """Set the test's project up on the simulated internet while the host's Redis and relay are
    ensured (they start once per host; a dead one is restarted), then run it. With `teardowns`
    its project is removed in the background once its record is made (worker.teardown). With
    `warm`, its routers are the ones started for it in standby if they fit, and it starts the
    next test's (worker.warmrouters)."""
    started_at = utc_stamp()
    phases = phases or Phases()
    test = request.test
    with phases("network"):
        services = host.services.prepare(request.base.image_id, request.relay.image_id)
    run_id = f"{request.pass_id}-{uuid.uuid4().hex[:6]}"  # a redelivered copy never shares names
    with phases("lease"):
        one_router = all(len(PRESETS[nat].routers) == 1 for nat in (test.dialer_nat, test.listener_nat))
        cell = warm.take(host.services.client, image_ref(request.router.image_id),
                         usable=one_router) if warm is not None else None
        if cell is not None:
            lans, networks = cell.lans, cell.networks
        else:
            lans, networks = host.lans.lease(host.leases, f"{request.pass_id} {test.name}")
    handed = False  # execute releases the lease once the test's networks are gone
    try:
        spec = spec_for(test.name, test.transport.value, request.dialer.image_id,
                        request.listener.image_id, request.router.image_id, run_id, services,
                        host, lans, request.delay_ms,
                        secure_channel=test.secure_channel.value if test.secure_channel else None,
                        muxer=test.muxer.value if test.muxer else None,
                        evidence=request.capture is not CaptureMode.NONE,
                        dialer_nat=test.dialer_nat, listener_nat=test.listener_nat,
                        dialer_contract=(test.dialer_contract or Contract.HOLEPUNCH).value,
                        listener_contract=(test.listener_contract or Contract.HOLEPUNCH).value,
                        lan_networks=networks)
        handed = True
        execution = execute(spec, lambda: host.services.ensure(request.base.image_id,
                                                               request.relay.image_id,
                                                               network_ready=True),
                            host, request.timeout_seconds, evidence_on_pass, phases,
                            teardowns=teardowns, then=partial(host.leases.release, lans),
                            cell=cell, warm=warm)
    finally:
        if not handed:
            if cell is not None:
                remove_routers(host.services.client, cell)
            host.leases.release(lans)
    if execution.run_s is not None:
        phases.add("dialer-own-run", execution.run_s)  # inside "run": the dialer's own part
    verdict = execution.verdict()
    rtt, reason = verdict.rtt_ms, verdict.reason
    if verdict.notes:
        execution.log += "".join(f"\n[holepunch] result line: {note}" for note in verdict.notes) + "\n"
    record = TestRecord(
        name=test.name, status=Status.PASS if rtt is not None else Status.FAIL,
        exit_code=execution.exit_code, rtt_ms=rtt, duration=f"{execution.seconds:.1f}s",
        time_to_direct_ms=verdict.time_to_direct_ms,
        rtt_samples_ms=list(verdict.rtt_samples_ms) if verdict.rtt_samples_ms else None,
        failed_step=None if rtt is not None else stopped_at(execution.log),
        docker_compose=execution.compose_file,
        dialer=PeerRecord.of(test.dialer, request.dialer),
        listener=PeerRecord.of(test.listener, request.listener), log_file=log_file_name(test.name),
        transport=test.variant, host=host.name, reason=as_reason(reason) if reason else None,
        expected_failure=test.expected_failure, started_at=started_at, finished_at=utc_stamp(),
        **test.dimensions())
    return RunOutput(record, execution.log[-LOG_LIMIT:], execution.compose_text,
                     execution.evidence)
