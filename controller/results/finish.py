"""The end of a pass: records -> results.yaml, results.md, results.html, output.log, the test-pass
zip, README.

Called by the chord's `aggregate` task on the controller's queue, and by `submit` itself when a
pass is interrupted (then with the records it has, and labelled partial).
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field

from cluster.cache import Cache, atomic_write
from cluster.matrix import drop_default_dimensions, matrix_from_yaml
from cluster.models import ImageInfo, ResultsMetadata, Settings, YamlModel, to_yaml_data
from cluster.tasks import PassSummary
from cluster.yamlio import dump_yaml
from controller.archive import wheelpack
from controller.archive.selfwheel import DISTRIBUTION, running_wheel
from controller.archive.testpass import rerun_script, write_test_pass
from controller.archive.thin import thin_snapshots
from controller.images import buildfolder, delta, rootfs, solid
from controller.results.collect import Collected, collect, exit_code_of
from controller.results.html import link_from, render_results_html
from controller.results.report import inject_dashboard, render_results_md

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class PassSpec(YamlModel):
    """What the aggregate needs to finish a pass, on the controller's host.

    The four paths are filled in by whoever finishes the pass from what it trusts: `submit`
    from its own options, the reporter from the pass registry and its own cache
    (controller.results.registered); the aggregate message never carries them. An empty
    `output_dir` means: write nothing there, return the outputs in the summary instead.
    """

    name: str
    kind: str
    base_dir: str = ""             # impl/base: the base image's Makefile, bundled for re-runs
    output_dir: str = ""
    cache_dir: str = ""
    started_at: str
    matrix_yaml: str
    settings: Settings
    images: dict[str, ImageInfo]   # implementation id (and router, rust-relay, base) -> image
    update_readme: str | None = None
    interrupted: bool = False
    extra_log: list[str] = Field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


def output_log(collected: Collected, extra: list[str]) -> str:
    lines = [*extra]
    for record in collected.results.tests:
        rtt = f" {record.rtt_ms:.0f} ms" if record.rtt_ms is not None else ""
        why = f" ({record.reason})" if record.reason else ""
        lines.append(f"{record.name}: {record.status.value}{rtt}{why} on {record.host} "
                     f"in {record.duration}")
    for name in collected.results.metadata.missing_tests:
        lines.append(f"{name}: no result (missing)")
    if collected.duplicates:
        lines.append(f"{collected.duplicates} duplicate results (redelivered tasks) were dropped")
    if collected.rejected:
        lines.append(f"{collected.rejected} results were dropped: they failed validation and "
                     "named no test of this pass, or named a test it does not have")
    return "\n".join(lines) + "\n"


def _bundle(cache: Cache, spec: PassSpec) -> dict[str, Path]:
    """Files the zip copies from the cache and the repository, by their name in the zip."""
    files: dict[str, Path] = {}
    for key, image in spec.images.items():
        for relative in (image.snapshot, image.makefile):
            if not relative or not _plain(relative):
                continue
            path = cache.path(relative)
            if path.is_file() and relative.startswith("rootfs/"):
                packed = rootfs.compressed(path)  # made once; stored as it is (controller.images.rootfs)
                files[f"rootfs/{packed.name}"] = packed
            elif path.is_file():
                files[relative] = path
                meta = path.with_name(path.name + ".metadata")
                if meta.is_file():
                    files[relative + ".metadata"] = meta
                crates = solid.vendor_pack(path)  # a github source's vendored crates: offline re-runs
                if relative.endswith(".zip") and crates.is_file():
                    files[relative.removesuffix(".zip") + solid.VENDOR_SUFFIX] = crates
                if relative.endswith(".zip") and not solid.packable(path):
                    # GitHub's zip has no Makefile: the one that built it (controller.images.buildfolder)
                    for name, kept in buildfolder.kept_files(cache.root, key).items():
                        files[f"{buildfolder.FOLDER}/{key}/{name}"] = kept
    rootfs_dir = cache.root / "rootfs"  # the tarball came with the base image; these point at it
    for pointer in ([*rootfs_dir.glob("*.sha256"), *rootfs_dir.glob("*.inputs")]
                    if rootfs_dir.is_dir() else []):
        files[f"rootfs/{pointer.name}"] = pointer
    base = Path(spec.base_dir)
    for path in base.iterdir() if base.is_dir() else []:
        if path.is_file() and path.name != "image.yaml":
            files[f"base/{path.name}"] = path
    dependencies = dependency_wheels(cache)
    if dependencies:  # one solid pack (controller.archive.wheelpack)
        files[wheelpack.IN_ZIP] = wheelpack.packed(dependencies, cache.root / "wheels" / "packs")
    return files


def dependency_wheels(cache: Cache) -> list[Path]:
    """The wheelhouse's wheels but holepunch's own: the zip carries a wheel of the running code."""
    wheels = cache.root / "wheels"
    return [wheel for wheel in (sorted(wheels.glob("*.whl")) if wheels.is_dir() else [])
            if not wheel.name.startswith(f"{DISTRIBUTION}-")]


def _members(spec: PassSpec) -> list[tuple[str, str]]:
    """The pass's (image id, snapshot) pairs: what controller.images.delta plans from."""
    return [(key, image.snapshot) for key, image in spec.images.items() if image.snapshot]


def _plain(relative: str) -> bool:
    """A plain relative name that stays under its folder (no absolute path, no `..`)."""
    return not Path(relative).is_absolute() and ".." not in Path(relative).parts


def finish_pass(spec: PassSpec, payloads: list[object]) -> PassSummary:
    """Write every output of a pass; return its summary and exit code.

    Without an output folder the outputs (results.yaml, results.md, results.html, output.log,
    logs/) come back in the summary's `outputs`, for `submit` to write where its user asked
    (controller.results.deliver): the reporter may run on a host that cannot see that folder.
    """
    cache = Cache(Path(spec.cache_dir))
    out = Path(spec.output_dir) if spec.output_dir else None
    completed = _now()
    started = datetime.strptime(spec.started_at, TIME_FORMAT).replace(tzinfo=UTC)
    matrix = matrix_from_yaml(spec.matrix_yaml)
    metadata = ResultsMetadata(
        test_pass=spec.name, started_at=spec.started_at, completed_at=completed.strftime(TIME_FORMAT),
        duration=f"{(completed - started).total_seconds():.0f}s", kind=spec.kind,
        platform=spec.settings.system.get("platform"), os=spec.settings.system.get("os"),
        worker_count=spec.settings.execution.worker_count,
        partial=spec.interrupted)
    collected = collect(metadata, matrix, payloads)
    results = collected.results
    results_data = to_yaml_data(results)
    for record in results_data["tests"]:
        drop_default_dimensions(record)  # a default test's record keeps the seed's shape
    results_yaml = dump_yaml(results_data)
    results_md = render_results_md(results)
    log_text = output_log(collected, spec.extra_log)

    logs = {name: text for name, text in collected.logs.items() if _plain(name)}
    captures = {name: data for name, data in collected.captures.items() if _plain(name)}
    outputs = {"results.yaml": results_yaml, "results.md": results_md,
               "results.html": render_results_html(  # beside logs/ and captures/, not docker-compose/
                   results, logs, linked={*logs, *captures}),
               "output.log": log_text, **logs}
    if out is not None:
        for relative, text in outputs.items():
            atomic_write(out / relative, text)
        for relative, data in captures.items():
            atomic_write(out / relative, data)

    images_yaml = dump_yaml({key: to_yaml_data(image) for key, image in spec.images.items()})
    zip_started = time.monotonic()
    wheel_name, wheel = running_wheel()
    texts: dict[str, str | bytes]  # text and the wheel's bytes
    texts = {"report.yaml": results_yaml, "results.md": results_md, "output.log": log_text,
             "results.html": render_results_html(results, collected.logs, linked={
                 *collected.logs, *collected.composes, *captures}),
             "test-matrix.yaml": spec.matrix_yaml,
             # nulls kept: the seed's shape (system.dockerCompose is null)
             "settings.yaml": dump_yaml(spec.settings.model_dump(mode="json", by_alias=True)),
             "re-run.sh": rerun_script(spec.name), "images.yaml": images_yaml,
             f"wheels/{wheel_name}": wheel, **collected.logs, **collected.composes, **captures}
    files = _bundle(cache, spec)
    snapshots = {name: files.pop(name) for name in list(files)
                 if name.startswith("snapshots/") and name.endswith(".zip")}
    ours = {name: path for name, path in snapshots.items() if solid.packable(path)}
    # ours: one zstd stream each, or a delta from another of the family (controller.images.delta)
    files.update(delta.stored_files(ours, _members(spec)))
    # foreign zips (github sources) are stored as they are, entries they share only once
    pack = thin_snapshots({name: path for name, path in snapshots.items() if name not in ours})
    files.update(pack.whole)
    zip_path = write_test_pass(cache, spec.name, {**texts, **pack.thin}, files)
    zip_seconds = time.monotonic() - zip_started

    if spec.update_readme and out is not None:  # else submit updates it (deliver)
        readme = Path(spec.update_readme)
        atomic_write(readme, inject_dashboard(readme.read_text(encoding="utf-8"), results_md,
                                              str(readme), link_from(readme, out / "results.html")))
    summary = results.summary
    return PassSummary.of(
        results.tests, name=spec.name, exit_code=exit_code_of(results),
        partial=results.metadata.partial, passed=summary.passed, failed=summary.failed,
        flaky=summary.flaky, known_failures=summary.known_failures,
        unexpected_passes=summary.unexpected_passes, errors=summary.errors,
        total=summary.total, missing=len(results.metadata.missing_tests),
        test_pass_zip=str(zip_path), test_pass_zip_bytes=zip_path.stat().st_size,
        test_pass_zip_seconds=round(zip_seconds, 2),
        wheelhouse=len(dependency_wheels(cache)),
        results_yaml=str(out / "results.yaml") if out else None,
        results_md=str(out / "results.md") if out else None,
        results_html=str(out / "results.html") if out else None,
        outputs=None if out else outputs,
        captures=None if out or not captures else {
            name: base64.b64encode(data).decode("ascii") for name, data in captures.items()})
