"""One pass, planned: what `run_pass` needs, gathered before the first task is sent.

`SubmitOptions` are the user's flags as the CLI read them; `plan_pass` turns them, with the
choice of cluster (controller.run.where), the planned matrix, the built images and what was
probed of this machine, into one `PassPlan`. From the plan alone come settings.yaml, the tasks
and the pass's deadline, each a pure function below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from cluster.celeryconfig import CONTROLLER_QUEUE, DEFAULT_KNOWN_FAILURE_TIMEOUT, TASK_OVERHEAD_SECONDS
from cluster.evidence import CaptureMode
from cluster.models import (
    DEFAULT_RELAY,
    Execution,
    Filters,
    GitInfo,
    ImageInfo,
    PassInfo,
    Relay,
    Settings,
    TestMatrix,
)
from cluster.tasks import RunRequest
from controller.plan.schedule import run_order, timeout_for
from controller.run.where import ExternalBroker, Where


@dataclass(frozen=True)
class SubmitOptions:
    root: Path
    kind: str = "full"
    base: str = "HEAD~1"
    test_filter: str | None = None
    test_ignore: str | None = None
    nat: str | None = None      # --nat: the NAT presets (None: the YAML's)
    relay: str | None = None    # --relay
    broker: str | None = None
    output_dir: Path = Path(".")
    timeout: int = 120
    known_failure_timeout: int | None = DEFAULT_KNOWN_FAILURE_TIMEOUT
    retries: int = 0
    workers: int | None = None
    update_readme: Path | None = None
    detach: bool = False
    controller_queue: str = CONTROLLER_QUEUE
    image_source: str | None = None
    deadline: int | None = None
    capture: CaptureMode = CaptureMode.FAILURES   # which tests keep their evidence
    build_jobs: int | None = None   # images built at once (controller.images.resolve)
    build_output: str = "log"       # make's output: "log" (a file per image) or "terminal"


@dataclass(frozen=True)
class PassOutputs:
    """Where the pass's outputs go, as absolute paths."""

    output_dir: Path
    update_readme: Path | None


def pass_outputs(options: SubmitOptions) -> PassOutputs:
    return PassOutputs(output_dir=options.output_dir.resolve(),
                       update_readme=options.update_readme.resolve() if options.update_readme
                       else None)


@dataclass(frozen=True)
class PassPlan:
    where: Where
    kind: str
    reason: str                     # settings.yaml's triggeredBy
    matrix: TestMatrix
    images: dict[str, ImageInfo]    # implementation id (and router, base, each relay's
                                    # image_key: rust-relay, go-relay) -> image
    outputs: PassOutputs
    base_dir: Path                  # impl/base, bundled in the test-pass zip for re-runs
    timeout: int                    # per test, seconds
    known_failure_timeout: int | None  # per known failure, if shorter; None: `timeout`
    retries: int
    workers: int | None             # tests at once on the embedded default; None: its default
    deadline: int | None            # seconds for the whole pass; None: default_deadline
    image_source: str | None
    controller_queue: str
    engine: str                     # the Docker engine's version
    git: GitInfo
    capture: CaptureMode = CaptureMode.FAILURES

    @property
    def detached(self) -> bool:
        return isinstance(self.where, ExternalBroker) and self.where.detach


def plan_pass(options: SubmitOptions, where: Where, kind: str, reason: str, matrix: TestMatrix,
              images: dict[str, ImageInfo], engine: str, git: GitInfo,
              base_dir: Path) -> PassPlan:
    return PassPlan(where=where, kind=kind, reason=reason, matrix=matrix, images=images,
                    outputs=pass_outputs(options), base_dir=base_dir,
                    timeout=options.timeout, known_failure_timeout=options.known_failure_timeout,
                    retries=options.retries, workers=options.workers,
                    deadline=options.deadline, image_source=options.image_source,
                    controller_queue=options.controller_queue, engine=engine, git=git,
                    capture=options.capture)


def settings_for(plan: PassPlan, name: str, cache_dir: Path,
                 system: dict[str, str | None]) -> Settings:
    """settings.yaml of the pass named `name`; `system` is controller.run.probe.system_info."""
    matrix = plan.matrix
    return Settings(
        test_pass=PassInfo(name=name, kind=plan.kind, triggered_by=plan.reason),
        filters=Filters(test_filter=list(matrix.metadata.filter),
                        test_ignore=list(matrix.metadata.ignore)),
        system=system,
        execution=Execution(worker_count=plan.workers, verbose=False, cache_dir=str(cache_dir),
                            timeout_seconds=plan.timeout,
                            known_failure_timeout_seconds=plan.known_failure_timeout,
                            retries=plan.retries, broker=plan.where.label),
        git=plan.git)


def relays_of(matrix: TestMatrix) -> list[Relay]:
    """The relays the matrix's tests meet through, in the order they first appear (the default
    alone for a matrix with no tests)."""
    return list(dict.fromkeys(test.relay for test in matrix.tests)) or [DEFAULT_RELAY]


def requests_for(plan: PassPlan, name: str) -> list[RunRequest]:
    """One run_test request per test of the matrix, in run order (controller.plan.schedule):
    the known failures after the others, each under the known-failure timeout, each with the
    image of its own relay."""
    images = plan.images
    return [RunRequest(pass_id=name, test=test, dialer=images[test.dialer],
                       listener=images[test.listener], router=images["router"],
                       relay=images[test.relay.image_key], base=images["base"],
                       timeout_seconds=timeout_for(test, plan.timeout, plan.known_failure_timeout),
                       retries=plan.retries, image_source=plan.image_source, capture=plan.capture)
            for test in run_order(plan.matrix.tests)]


def default_deadline(tests: int, timeout: int, retries: int, concurrency: int) -> int:
    """How long a pass may take before it is declared partial: every test at its timeout."""
    per_test = (timeout + TASK_OVERHEAD_SECONDS) * (retries + 1)
    return per_test * math.ceil(tests / max(1, concurrency)) + 300


def deadline_seconds(plan: PassPlan) -> int:
    """The user's --deadline, else every test at its timeout, two at once unless told."""
    return plan.deadline or default_deadline(len(plan.matrix.tests), plan.timeout,
                                             plan.retries, plan.workers or 2)
