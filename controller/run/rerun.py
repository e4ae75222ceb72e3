"""Re-run an unzipped test pass: the same matrix on images rebuilt from the pass's own snapshots.

Each image is rebuilt from its bundled snapshot, unless the engine still has the very image (by
ID) the pass ran: an image ID names its content, layers and configuration together, so that is
the image a rebuild could only reproduce (or, with another toolchain, differ from). On another
machine none is there and all are rebuilt. The pass's own timeout and retries hold again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from cluster.cache import Cache, short
from cluster.errors import InfrastructureError
from cluster.matrix import matrix_from_yaml
from cluster.models import ImageInfo, ImagesFile, Settings
from cluster.yamlio import load_model, read_text
from controller.archive.thin import restore_snapshots
from controller.images import rootfs
from controller.images.build import Builder
from controller.images.delta import restore_deltas
from controller.images.solid import restore_solid
from controller.run.pass_plan import SubmitOptions, plan_pass
from controller.run.probe import engine_version, git_info
from controller.run.progress import report_summary
from controller.run.submit import run_pass
from controller.run.where import start_cluster, where_pass_runs


@dataclass(frozen=True)
class RerunPlan:
    reuse: dict[str, ImageInfo]      # key -> the recorded image, present in the engine
    rebuild: dict[str, str]          # key -> the snapshot to rebuild it from


def plan_rerun(recorded: dict[str, ImageInfo], has_image: Callable[[str], bool]) -> RerunPlan:
    """Split a pass's images (images.yaml, without the base) into present and to-rebuild."""
    reuse: dict[str, ImageInfo] = {}
    rebuild: dict[str, str] = {}
    for key, image in sorted(recorded.items()):
        if key == "base":
            continue  # always made by its Makefile: a tag, or a load of the bundled rootfs
        if has_image(image.image_id):
            reuse[key] = image
        elif not image.snapshot:
            raise InfrastructureError(f"images.yaml: {key} names no snapshot to rebuild it from")
        else:
            rebuild[key] = image.snapshot
    return RerunPlan(reuse, rebuild)


def recorded_options(options: SubmitOptions, settings: Settings | None) -> SubmitOptions:
    """The pass's own retries (and a longer timeout, if it had one) unless given again; its
    known failures' timeout as it had it (none for a pass from before there was one)."""
    if settings is None:
        return options
    retries = options.retries or settings.execution.retries
    timeout = max(options.timeout, settings.execution.timeout_seconds)
    recorded = settings.execution.known_failure_timeout_seconds  # None: a pass from before it
    known = None if recorded is None or options.known_failure_timeout is None \
        else max(options.known_failure_timeout, recorded)
    return dataclasses.replace(options, retries=retries, timeout=timeout,
                               known_failure_timeout=known)


def rerun(folder: Path, options: SubmitOptions, cache: Cache, console: Console) -> int:
    """Re-run the pass unzipped in `folder` (also its cache: snapshots/, makefiles/, rootfs/)."""
    matrix_path = folder / "test-matrix.yaml"
    matrix = matrix_from_yaml(read_text(matrix_path), str(matrix_path))
    # The zip's manifests are input like any config: a wrong key exits 2 naming it, and a file
    # name in them is a plain one under its cache folder (cluster.models).
    recorded = load_model(ImagesFile, folder / "images.yaml").root
    settings = load_model(Settings, folder / "settings.yaml")
    kind = settings.test_pass.kind
    engine = engine_version()
    base = recorded.get("base")
    if base and base.snapshot and rootfs.unpack(cache.path(base.snapshot)):
        console.print(f"base: unpacked {base.snapshot} from its .xz")
    for whole in restore_solid(folder / "snapshots"):
        how = ("byte for byte" if whole.byte_for_byte
               else "same entries; this zlib compresses them to other bytes")
        console.print(f"snapshots/{whole.name}: restored from its solid pack ({how})")
    for patched, reference in restore_deltas(folder / "snapshots"):
        how = ("byte for byte" if patched.byte_for_byte
               else "same entries; this zlib compresses them to other bytes")
        console.print(f"snapshots/{patched.name}: restored from its delta from {reference} ({how})")
    for restored in restore_snapshots(folder / "snapshots"):
        console.print(f"snapshots/{restored}: restored from its thin zip and the entries it shares")
    builder = Builder(cache, log=console.print)
    images = {"base": builder.build_base(folder / "base")}
    rebuilt = plan_rerun(recorded, builder.has_image)
    for key, image in rebuilt.reuse.items():
        console.print(f"{key}: the engine has image {short(image.image_id)}, the one the pass "
                      f"ran: not rebuilt")
    for key, snapshot in rebuilt.rebuild.items():
        images[key] = builder.rebuild(key, snapshot)
    images.update(rebuilt.reuse)
    reason = f"re-run of {settings.test_pass.name}"
    options = recorded_options(options, settings)
    where = where_pass_runs(options.broker, options.detach, options.workers, options.timeout)
    plan = plan_pass(options, where, kind, reason, matrix, images, engine, git_info(options.root),
                     folder / "base")
    with start_cluster(where, cache.root) as cluster:  # booted once the images are there
        summary, code = run_pass(plan, cache, console, cluster)
    if summary is not None:
        report_summary(summary, console)
    return code
