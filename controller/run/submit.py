"""`submit`: one whole pass, from the selection to results.md, as a Celery chord.

config -> matrix -> images -> chord(run_test per test | aggregate) -> progress -> exit code
"""

from __future__ import annotations

import json
import math
import platform
import socket
import subprocess
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import kombu.exceptions
import redis.exceptions
from celery import chord
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cluster.app import configure
from cluster.cache import Cache
from cluster.celeryconfig import CONTROLLER_QUEUE, TASK_OVERHEAD_SECONDS
from cluster.errors import InfrastructureError
from cluster.matrix import matrix_to_yaml
from cluster.models import (Execution, Filters, GitInfo, ImageInfo, ImplsFile, PassInfo, Settings,
                            Status, TestMatrix, TestRecord)
from cluster.tasks import (PassSummary, Rejected, RunRequest, aggregate_signature, read_result,
                           run_test_signature)
from controller.images.build import Builder, implementation_targets, infrastructure_targets
from controller.plan.config import detect_kind
from controller.run.embedded import EmbeddedCluster
from controller.images.export import export_image
from controller.results.deliver import deliver
from controller.results.finish import TIME_FORMAT, PassSpec, finish_pass
from controller.run.outputs import check_local, check_reporter_sees
from controller.plan.matrix import plan_matrix
from controller.archive.testpass import pass_name

from controller.run.status import PASS_KEY
EXIT_INTERRUPTED = 130


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
    retries: int = 0
    workers: int | None = None
    update_readme: Path | None = None
    detach: bool = False
    controller_queue: str = CONTROLLER_QUEUE
    image_source: str | None = None
    deadline: int | None = None


def engine_version() -> str:
    result = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InfrastructureError("the Docker engine is not reachable (is dockerd running? "
                                  "bash .ci/setup starts it): " + result.stderr.strip()[-300:])
    return result.stdout.strip()


def _git(root: Path, *args: str) -> str | None:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                            check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def settings_for(options: SubmitOptions, name: str, kind: str, reason: str, matrix: TestMatrix,
                 cache: Cache, engine: str, workers: int | None) -> Settings:
    """settings.yaml. `dockerCompose` stays in the seed's shape but is null: workers run each
    test's compose file through the engine's API (worker.project), not with docker-compose."""
    return Settings(
        test_pass=PassInfo(name=name, kind=kind, triggered_by=reason),
        filters=Filters(test_filter=list(matrix.metadata.filter),
                        test_ignore=list(matrix.metadata.ignore)),
        system={"platform": platform.machine(), "os": platform.system(),
                "osVersion": platform.platform(), "docker": engine, "dockerCompose": None,
                "python": platform.python_version(), "controllerHost": socket.gethostname()},
        execution=Execution(worker_count=workers, verbose=False, cache_dir=str(cache.root),
                            timeout_seconds=options.timeout, retries=options.retries,
                            broker="embedded" if not options.broker else "external"),
        git=GitInfo(repository=_git(options.root, "remote", "get-url", "origin"),
                    branch=_git(options.root, "rev-parse", "--abbrev-ref", "HEAD"),
                    commit=_git(options.root, "rev-parse", "HEAD"),
                    dirty_working_tree=bool(_git(options.root, "status", "--porcelain"))))


def build_images(options: SubmitOptions, cache: Cache, impls: ImplsFile, matrix: TestMatrix,
                 log: Callable[[str], None],
                 infrastructure_ready: Callable[[dict[str, ImageInfo]], None] = lambda _: None,
                 ) -> dict[str, ImageInfo]:
    """Only the images the selected tests need, plus base, router and relay (first, and
    `infrastructure_ready` is told of them before the implementations resolve). `impls` is the
    configuration the matrix was planned from: read once per pass."""
    needed = list(dict.fromkeys(n for t in matrix.tests for n in (t.dialer, t.listener)))
    builder = Builder(cache, log=log)
    images: dict[str, ImageInfo] = {}
    for target in infrastructure_targets(options.root):
        images[target.name] = builder.build(target).image
    infrastructure_ready(images)
    for target in implementation_targets(options.root, impls, needed):
        images[target.name] = builder.build(target).image
    return images


def _requests(spec: PassSpec, matrix: TestMatrix, options: SubmitOptions) -> list[RunRequest]:
    images = spec.images
    return [RunRequest(pass_id=spec.name, test=test, dialer=images[test.dialer],
                       listener=images[test.listener], router=images["router"],
                       relay=images["rust-relay"], base=images["base"],
                       timeout_seconds=options.timeout, retries=options.retries,
                       image_source=options.image_source) for test in matrix.tests]


def default_deadline(tests: int, options: SubmitOptions, concurrency: int) -> int:
    """How long a pass may take before it is declared partial: every test at its timeout."""
    per_test = (options.timeout + TASK_OVERHEAD_SECONDS) * (options.retries + 1)
    return per_test * math.ceil(tests / max(1, concurrency)) + 300


def _line(record: TestRecord) -> str:
    if record.status is Status.ERROR:
        return f"{'ERROR':>13}  {record.name}: {record.reason} [{record.host}]"
    if record.status is Status.FAIL:
        mark = "known failure" if record.expected_failure else "FAIL"
        return f"{mark:>13}  {record.name}: {record.reason} [{record.host}]"
    return f"{record.status.value.upper():>13}  {record.name}: {record.rtt_ms:.0f} ms [{record.host}]"


def submit(options: SubmitOptions, cache: Cache, console: Console,
           embedded: EmbeddedCluster | None = None) -> int:
    """The pass; without a broker on `embedded`, started already (the CLI starts it first
    thing), or on an embedded cluster of its own."""
    kind, reason = options.kind, f"--kind {options.kind}"
    if kind == "auto":
        choice = detect_kind(options.root, options.base)
        kind, reason = choice.kind, choice.reason
        console.print(f"--kind auto: {kind} ({reason})")
    plan = plan_matrix(options.root, kind, options.test_filter, options.test_ignore, cache,
                       options.nat, options.relay)
    matrix = plan.matrix
    console.print(f"{len(matrix.tests)} tests selected ({kind})")
    check_outputs(options)
    engine = engine_version()
    base_dir = options.root.resolve() / "impl" / "base"
    own = None if options.broker or embedded else EmbeddedCluster(cache.root, options.workers,
                                                                  options.timeout)
    embedded = embedded or own
    with own or nullcontext():  # the embedded cluster boots while the images resolve
        images = build_images(options, cache, plan.impls, matrix, log=console.print,
                              infrastructure_ready=lambda infra: embedded and embedded.start_services(
                                  infra["base"].image_id, infra["rust-relay"].image_id))
        return run_pass(options, cache, console, kind, reason, matrix, images, engine, base_dir,
                        embedded)


PASS_KEY_TTL = 7 * 24 * 3600
PATHS = {"output_dir", "update_readme", "cache_dir", "base_dir"}  # never in the aggregate message


def check_outputs(options: SubmitOptions) -> None:
    """Refuse now what could not be written after the last test (controller.run.outputs)."""
    output_dir = options.output_dir.resolve()
    readme = options.update_readme.resolve() if options.update_readme else None
    check_local(output_dir, readme)
    if options.detach:
        app = configure(options.broker, options.timeout)
        check_reporter_sees(app, output_dir, "--output-dir", options.controller_queue)
        if readme is not None:
            check_reporter_sees(app, readme.parent, "--update-readme", options.controller_queue)


def registry_outputs(options: SubmitOptions, output_dir: Path, base_dir: Path) -> dict:
    """What the reporter may write, from the pass registry: a detached pass's outputs (the
    reporter was asked whether it sees them); an attached pass's come back to submit."""
    readme = options.update_readme.resolve() if options.update_readme else None
    return {"outputDir": str(output_dir) if options.detach else None,
            "updateReadme": str(readme) if options.detach and readme else None,
            "baseDir": str(base_dir)}


def claim_pass_name(redis_client, cache: Cache, name: str) -> str:
    """The seed's pass name, made unique: two passes started in the same second on one broker
    (or one cache) get `<name>`, `<name>-2`, ... The claim is a SET NX on the broker, so two
    controllers cannot both win; the zip check covers embedded passes with their own Redis."""
    for n in range(1, 1000):
        candidate = name if n == 1 else f"{name}-{n}"
        if (cache.root / "test-passes" / f"{candidate}.zip").exists():
            continue
        if redis_client.set(PASS_KEY.format(candidate), json.dumps({"claimed": True}), nx=True,
                            ex=PASS_KEY_TTL):
            return candidate
    raise InfrastructureError(f"no free test-pass name after {name}-999")


def run_pass(options: SubmitOptions, cache: Cache, console: Console, kind: str, reason: str,
             matrix: TestMatrix, images: dict[str, ImageInfo], engine: str, base_dir: Path,
             embedded: EmbeddedCluster | None = None) -> int:
    """Enqueue the chord for `matrix` on `images`, follow it, report; the exit code of the pass.

    Without a broker it runs on `embedded`, or on an embedded cluster of its own if none is given.
    """
    if options.broker:
        for image_id in {image.image_id for image in images.values()}:
            path, written = export_image(cache, image_id)
            if written:
                console.print(f"saved {path.name} for the workers")

    output_dir = options.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    concurrency = options.workers
    own = None if options.broker or embedded else EmbeddedCluster(cache.root, concurrency,
                                                                  options.timeout)
    embedded = embedded or own
    with own or nullcontext():
        broker = embedded.broker if embedded else options.broker
        app = configure(broker, options.timeout)
        if embedded:
            console.print(f"embedded cluster: Redis {broker}, worker {embedded.host}")
            embedded.start_services(images["base"].image_id, images["rust-relay"].image_id)
        started = datetime.now(timezone.utc)
        with app.connection_for_write() as conn:
            name = claim_pass_name(conn.default_channel.client, cache,
                                   pass_name(kind, started.astimezone()))
            outputs = registry_outputs(options, output_dir, base_dir)
            conn.default_channel.client.set(PASS_KEY.format(name), json.dumps(
                {"claimed": True, "outputs": outputs}), ex=PASS_KEY_TTL, xx=True)
        settings = settings_for(options, name, kind, reason, matrix, cache, engine, concurrency)
        spec = PassSpec(name=name, kind=kind, base_dir=str(base_dir),
                        output_dir=str(output_dir), cache_dir=str(cache.root),
                        started_at=started.strftime(TIME_FORMAT), matrix_yaml=matrix_to_yaml(matrix),
                        settings=settings, images=images,
                        update_readme=str(options.update_readme.resolve()) if options.update_readme else None)
        header = [run_test_signature(r) for r in _requests(spec, matrix, options)]
        body = aggregate_signature(spec.model_dump(mode="json", by_alias=True, exclude=PATHS),
                                   options.controller_queue)
        result = chord(header)(body)
        group = result.parent
        group.save()
        with app.connection_for_write() as conn:
            conn.default_channel.client.set(PASS_KEY.format(name), json.dumps({
                "group": group.id, "aggregate": result.id, "total": len(header),
                "outputDir": str(output_dir), "outputs": outputs}), ex=PASS_KEY_TTL)
        console.print(f"pass {name}: {len(header)} tests submitted")
        if options.detach:
            console.print(f"detached; follow it with: holepunch-controller status {name}")
            del result, group
            _close_results(app)
            return 0
        deadline = time.monotonic() + (options.deadline or default_deadline(
            len(header), options, concurrency or 2))
        stopped_with: int | None = None  # the exit code when the pass was stopped short
        try:
            summary, why = _follow(result, group, len(header), deadline, console,
                                   embedded.check if embedded else None)
        except KeyboardInterrupt:
            if embedded:
                embedded.interrupted = True
            console.print("interrupted: stopping the pass and writing what finished (partial)")
            summary, why, stopped_with = None, "interrupted by the user (Ctrl-C)", EXIT_INTERRUPTED
        except InfrastructureError as exc:
            console.print(f"stopping the pass: {exc}", markup=False)
            summary, why, stopped_with = None, str(exc), exc.exit_code
        if summary is None:
            _revoke(group, console)
            summary = _finish_locally(spec, group, why)
        summary = deliver(summary, output_dir, options.update_readme.resolve()
                          if options.update_readme else None)
        del result, group
        _close_results(app)  # else the result listener's finaliser fails once Redis is gone
    _report(summary, console)
    return summary.exit_code if stopped_with is None else stopped_with


BROKER_ERRORS = (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                 kombu.exceptions.OperationalError)


def _follow(result, group, total: int, deadline: float, console: Console,
            check: Callable[[], None] | None = None) -> tuple[PassSummary | None, str]:
    """Show progress until the aggregate is done: (its summary, ""), or (None, why) if the
    deadline passes first. `check` raises when the cluster is broken beyond waiting for."""
    seen: set[str] = set()
    passed = failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("pass {task.fields[passed]} fail {task.fields[failed]}"),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task("tests", total=total, passed=0, failed=0)
        broker_lost_at: float | None = None
        while True:
            if check is not None:
                check()  # raises InfrastructureError: the caller writes what finished
            try:
                newly = [child for child in group.results
                         if child.id not in seen and child.ready()]
                aggregate_ready = result.ready()
            except BROKER_ERRORS as exc:
                # A broker restart: keep asking until the deadline; never hang past it.
                if broker_lost_at is None:
                    broker_lost_at = time.monotonic()
                    progress.console.print(f"broker unreachable ({exc.__class__.__name__}); "
                                           "waiting for it until the pass's deadline")
                if time.monotonic() > deadline:
                    console.print("deadline passed while the broker was unreachable")
                    return None, "the pass outlived its deadline (broker unreachable)"
                time.sleep(1)
                continue
            if broker_lost_at is not None:
                progress.console.print(f"broker back after {time.monotonic() - broker_lost_at:.0f} s")
                broker_lost_at = None
            for child in newly:
                if child.id in seen:
                    continue
                seen.add(child.id)
                read = read_result(child.result) if child.successful() else None
                if read is not None and not isinstance(read, Rejected):
                    passed, failed = passed + read.ok, failed + (not read.ok)
                    progress.console.print(_line(read.record))
                else:
                    failed += 1
                    why = read.problem if read is not None else repr(child.result)
                    progress.console.print(f"{'ERROR':>13}  task {child.id}: {why[:500]}",
                                           markup=False)
                progress.update(task, completed=len(seen), passed=passed, failed=failed)
            if aggregate_ready:
                if result.successful():
                    return PassSummary.model_validate(result.result), ""
                console.print(f"the aggregate failed: {result.result!r}")
                return None, f"the aggregate failed: {result.result!r}"
            if time.monotonic() > deadline:
                console.print("deadline passed before every test reported")
                return None, "the pass outlived its deadline"
            time.sleep(0.5)


def _revoke(group, console: Console) -> None:
    """Stop what is left of the pass; with the broker gone there is nothing to tell."""
    try:
        group.revoke(terminate=True)
    except BROKER_ERRORS as exc:
        console.print(f"could not revoke the remaining tests: {exc}")


def _close_results(app) -> None:
    """Stop listening for results while the broker still runs (the embedded one stops next).

    Result objects still alive at exit would unsubscribe from a broker that is gone, in their
    finalisers; with nothing left to wait for, their backend forgets them quietly instead.
    """
    backend = app.backend
    backend.remove_pending_result = lambda result: result
    try:
        backend.result_consumer.stop()
    except Exception:  # noqa: BLE001 - nothing to stop, or the broker is already gone
        pass


def _finish_locally(spec: PassSpec, group, why: str) -> PassSummary:
    """Write the outputs from whatever finished; the pass is labelled partial."""
    payloads = []
    for child in group.results:
        try:
            if child.ready() and child.successful():
                payloads.append(child.result)
        except Exception:  # noqa: BLE001 - a broker gone mid-pass: what we have is what we have
            continue
    spec = spec.model_copy(update={"interrupted": True, "extra_log": [why]})
    return finish_pass(spec, payloads)


def _report(summary: PassSummary, console: Console) -> None:
    console.print(Path(summary.results_md).read_text(encoding="utf-8"), markup=False)
    state = "PARTIAL" if summary.partial else "complete"
    counts = [f"{summary.passed} passed", f"{summary.failed} failed",
              *([f"{summary.flaky} flaky"] if summary.flaky else []),
              *([f"{summary.known_failures} known failures"] if summary.known_failures else []),
              *([f"{summary.errors} errors"] if summary.errors else []),
              *([f"{summary.missing} missing"] if summary.missing else [])]
    console.print(f"{state}: {', '.join(counts)} of {summary.total}")
    html = f", {summary.results_html}" if summary.results_html else ""
    console.print(f"results: {summary.results_yaml}, {summary.results_md}{html}")
    zip_note = "" if Path(summary.test_pass_zip).is_file() else " (on the reporter's host)"
    console.print(f"test pass: {summary.test_pass_zip}{zip_note}")
    if summary.test_pass_zip_bytes is not None:
        console.print(f"test-pass zip: {summary.test_pass_zip_bytes / 1e6:.1f} MB, written in "
                      f"{summary.test_pass_zip_seconds or 0:.1f} s")
    if summary.wheelhouse == 0:
        console.print("test-pass zip: warning: the cache has no wheelhouse (wheels/, made by "
                      "`bash .ci/setup`), so its re-run.sh needs PyPI to install holepunch's "
                      "Python dependencies")
    if summary.error_tests:  # last, so a CI log's tail names them
        console.print(f"{len(summary.error_tests)} tests ended on an infrastructure fault after "
                      "their retries (status error; no verdict on them, exit 3):", markup=False)
        for note in summary.error_tests:
            console.print(f"{'ERROR':>13}  {note.name}: {note.reason} [{note.host}]", markup=False)
