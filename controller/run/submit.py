"""`submit`: one whole pass, from the selection to results.md, as a Celery chord.

config -> matrix -> images -> plan -> chord(run_test per test | aggregate) -> progress -> exit code

Where the pass runs is decided before (controller.run.where); the terminal display is
controller.run.progress, the pass registry controller.results.registered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import cast

from celery import chord
from celery.result import GroupResult
from rich.console import Console

from cluster.app import configure
from cluster.cache import Cache
from cluster.errors import EXIT_INTERRUPTED, InfrastructureError
from cluster.matrix import matrix_to_yaml
from cluster.models import ImageInfo, ImplsFile, TestMatrix
from cluster.tasks import PassSummary, aggregate_signature, run_test_signature
from controller.archive.testpass import pass_name
from controller.images.export import export_image
from controller.images.resolve import resolve_images
from controller.plan.config import detect_kind
from controller.plan.matrix import plan_matrix
from controller.results.deliver import deliver
from controller.results.finish import TIME_FORMAT, PassSpec, finish_pass
from controller.results.recover import SPEC_KEY, SUBMIT_GRACE_S, claim, lost_note, stored_payloads
from controller.results.registered import (
    PASS_KEY_TTL,
    claim_pass_name,
    outputs_entry,
    record_chord,
    record_outputs,
)
from controller.run.celery_patch import stop_result_listener
from controller.run.embedded import EmbeddedCluster
from controller.run.outputs import check_outputs
from controller.run.pass_plan import (
    PassPlan,
    SubmitOptions,
    deadline_seconds,
    pass_outputs,
    plan_pass,
    relays_of,
    requests_for,
    settings_for,
)
from controller.run.probe import engine_version, git_info, system_info
from controller.run.progress import BROKER_ERRORS, follow, report_summary
from controller.run.visibility import check_visibility
from controller.run.where import ExternalBroker, Where

PATHS = {"output_dir", "update_readme", "cache_dir", "base_dir"}  # never in the aggregate message


def build_images(options: SubmitOptions, cache: Cache, impls: ImplsFile, matrix: TestMatrix,
                 console: Console,
                 infrastructure_ready: Callable[[dict[str, ImageInfo]], None] = lambda _: None,
                 ) -> dict[str, ImageInfo]:
    """Only the images the selected tests need, plus base, router and the relays they meet
    through (controller.images.resolve: the base first, the rest at once, one line each);
    `infrastructure_ready` is told of the base and the first relay as soon as they are known.
    `impls` is the configuration the matrix was planned from: read once per pass."""
    needed = list(dict.fromkeys(n for t in matrix.tests for n in (t.dialer, t.listener)))
    return resolve_images(options.root, cache, impls, needed, console, jobs=options.build_jobs,
                          output=options.build_output, services_ready=infrastructure_ready,
                          relays=relays_of(matrix))


def submit(options: SubmitOptions, where: Where, cluster: EmbeddedCluster | None, cache: Cache,
           console: Console) -> int:
    """The pass, on `cluster` (started already: the CLI starts it first thing, and it boots
    while the images resolve) when `where` is the embedded default, else on its broker."""
    kind, reason = options.kind, f"--kind {options.kind}"
    if kind == "auto":
        choice = detect_kind(options.root, options.base)
        kind, reason = choice.kind, choice.reason
        console.print(f"--kind auto: {kind} ({reason})")
    planned = plan_matrix(options.root, kind, options.test_filter, options.test_ignore, cache,
                          options.nat, options.relay)
    matrix = planned.matrix
    console.print(f"{len(matrix.tests)} tests selected ({kind})")
    check_outputs(pass_outputs(options), where, options.timeout, options.controller_queue)
    if isinstance(where, ExternalBroker):  # the embedded cluster is started for --timeout
        check_visibility(configure(where.broker, options.timeout), options.timeout)
    engine = engine_version()

    first_relay = relays_of(matrix)[0].image_key

    def infrastructure_ready(infra: dict[str, ImageInfo]) -> None:
        if cluster is not None:
            cluster.start_services(infra["base"].image_id, infra[first_relay].image_id)

    images = build_images(options, cache, planned.impls, matrix, console,
                          infrastructure_ready=infrastructure_ready)
    plan = plan_pass(options, where, kind, reason, matrix, images, engine,
                     git_info(options.root), options.root.resolve() / "impl" / "base")
    summary, code = run_pass(plan, cache, console, cluster)
    if summary is not None:
        report_summary(summary, console)
    return code


def run_pass(plan: PassPlan, cache: Cache, console: Console,
             cluster: EmbeddedCluster | None) -> tuple[PassSummary | None, int]:
    """Enqueue the chord for the plan's matrix on its images, follow it and write the outputs:
    the pass's summary (None once detached) and its exit code; the caller reports the summary
    (controller.run.progress.report_summary). `cluster` is the running embedded cluster
    (controller.run.where.start_cluster) when the plan runs on the embedded default, else None."""
    broker = _broker(plan.where, cluster)
    if isinstance(plan.where, ExternalBroker):  # remote workers fetch them from the cache
        for image_id in {image.image_id for image in plan.images.values()}:
            path, written = export_image(cache, image_id)
            if written:
                console.print(f"saved {path.name} for the workers")
    output_dir = plan.outputs.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    app = configure(broker, plan.timeout)
    if cluster is not None:
        console.print(f"embedded cluster: Redis {broker}, worker {cluster.host}")
        cluster.start_services(plan.images["base"].image_id,
                               plan.images[relays_of(plan.matrix)[0].image_key].image_id)
    started = datetime.now(UTC)
    with app.connection_for_write() as conn:
        client = conn.default_channel.client  # type: ignore[attr-defined]  # kombu's Redis channel
        name = claim_pass_name(client, cache, pass_name(plan.kind, started.astimezone()))
        outputs = outputs_entry(output_dir, plan.outputs.update_readme, plan.base_dir,
                                plan.detached)
        record_outputs(client, name, outputs)
    spec = PassSpec(name=name, kind=plan.kind, base_dir=str(plan.base_dir),
                    output_dir=str(output_dir), cache_dir=str(cache.root),
                    started_at=started.strftime(TIME_FORMAT),
                    matrix_yaml=matrix_to_yaml(plan.matrix),
                    settings=settings_for(plan, name, cache.root, system_info(plan.engine)),
                    images=plan.images,
                    update_readme=str(plan.outputs.update_readme)
                    if plan.outputs.update_readme else None)
    header = [run_test_signature(r) for r in requests_for(plan, name)]
    spec_data = spec.model_dump(mode="json", by_alias=True, exclude=PATHS)
    body = aggregate_signature(spec_data, plan.controller_queue)
    with app.connection_for_write() as conn:  # what the reporter finishes a lost callback from
        conn.default_channel.client.set(  # type: ignore[attr-defined]  # kombu's Redis channel
            SPEC_KEY.format(name), json.dumps(spec_data),
                                        ex=PASS_KEY_TTL)
    result = chord(header)(body)
    group = cast(GroupResult, result.parent)  # a chord's parent: the group of its header
    group.save()
    assert group.id is not None  # a saved group has its id
    with app.connection_for_write() as conn:
        client = conn.default_channel.client  # type: ignore[attr-defined]  # kombu's Redis channel
        record_chord(client, name, group.id, result.id, len(header), output_dir, outputs)
    console.print(f"pass {name}: {len(header)} tests submitted")
    if plan.detached:
        console.print(f"detached; follow it with: holepunch-controller status {name}")
        del result, group
        stop_result_listener(app)
        return None, 0
    deadline = time.monotonic() + deadline_seconds(plan)
    stopped_with: int | None = None  # the exit code when the pass was stopped short
    try:
        summary, why = follow(result, group, len(header), deadline, console,
                              cluster.check if cluster else None,
                              recover=partial(_recover, app, spec, group, result.id),
                              grace=SUBMIT_GRACE_S)
    except KeyboardInterrupt:
        if cluster:
            cluster.interrupted = True
        console.print("interrupted: stopping the pass and writing what finished (partial)")
        summary, why, stopped_with = None, "interrupted by the user (Ctrl-C)", EXIT_INTERRUPTED
    except InfrastructureError as exc:
        console.print(f"stopping the pass: {exc}", markup=False)
        summary, why, stopped_with = None, str(exc), exc.exit_code
    if summary is None:
        _revoke(group, console)
        summary = _finish_locally(spec, group, why)
        _settle(app, spec.name, result.id, summary)
    summary = deliver(summary, output_dir, plan.outputs.update_readme)
    del result, group
    stop_result_listener(app)  # else the result listener's finaliser fails once Redis is gone
    return summary, summary.exit_code if stopped_with is None else stopped_with


def _broker(where: Where, cluster: EmbeddedCluster | None) -> str:
    """The broker URL the pass is sent to: the given one, or the embedded cluster's own Redis."""
    if isinstance(where, ExternalBroker):
        return where.broker
    if cluster is None:
        raise RuntimeError("a pass on the embedded default needs its cluster started "
                           "(controller.run.where.start_cluster)")
    return cluster.broker


def _revoke(group, console: Console) -> None:
    """Stop what is left of the pass; with the broker gone there is nothing to tell."""
    try:
        group.revoke(terminate=True)
    except BROKER_ERRORS as exc:
        console.print(f"could not revoke the remaining tests: {exc}")


def _recover(app, spec: PassSpec, group, aggregate_id: str) -> PassSummary | None:
    """Finish a pass whose every test reported but whose callback never came, unless someone
    else (the reporter, the callback itself) claimed it first; complete, with a note saying so.
    The summary is stored under the aggregate's id, as the callback would have."""
    with app.connection_for_write() as conn:
        if not claim(conn.default_channel.client, spec.name, "submit"):
            return None
    payloads = stored_payloads(group) or []
    summary = finish_pass(spec.model_copy(update={"extra_log": [lost_note("submit")]}), payloads)
    app.backend.store_result(aggregate_id, summary.to_message(), "SUCCESS")
    return summary


def _settle(app, name: str, aggregate_id: str, summary: PassSummary) -> None:
    """A pass submit finished itself is claimed and its summary stored under the aggregate's
    id: neither the reporter's watch nor a late callback writes it again. Best effort: the
    broker may be what stopped the pass."""
    try:
        with app.connection_for_write() as conn:
            claim(conn.default_channel.client, name, "submit")
        app.backend.store_result(aggregate_id, summary.to_message(), "SUCCESS")
    except BROKER_ERRORS:
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
