"""The images a pass needs, built or found up to date: the base first, then the rest at once.

Every image but the base is built FROM the base and nothing else, so once the base is known the
NAT router, the relay and the implementations are independent: they are built `jobs` at a time
(bounded: a rust build alone keeps two cores busy). One line per image shows how each goes
(controller.images.progress); make's own output goes to the image's log under the cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from rich.console import Console

from cluster.cache import Cache, short
from cluster.models import DEFAULT_RELAY, ImageInfo, ImplsFile, Relay
from controller.images import delta
from controller.images.build import Builder, BuildTarget, implementation_targets, infrastructure_targets
from controller.images.progress import BuildDisplay

Ready = Callable[[dict[str, ImageInfo]], None]


def default_jobs() -> int:
    """Builds at once: one per core, at most four (each build runs its own parallel compiler)."""
    return max(1, min(4, os.cpu_count() or 1))


def resolve_images(root: Path, cache: Cache, impls: ImplsFile, needed: list[str],
                   console: Console, jobs: int | None = None, output: str = "log",
                   services_ready: Ready = lambda _: None,
                   builder_factory: Callable[..., Builder] | None = None,
                   relays: Sequence[Relay] = (DEFAULT_RELAY,)) -> dict[str, ImageInfo]:
    """Base, router, the `relays` and the `needed` implementations (by id), in that order in
    the result. `services_ready` is told once the base and the first relay are known (the
    embedded cluster starts the host's Redis and that relay then, while the other images
    build; a worker starts another relay's set when a test first needs it)."""
    infrastructure = infrastructure_targets(root, relays)
    first_relay = infrastructure[2].name
    base, others = infrastructure[0], infrastructure[1:] + implementation_targets(root, impls,
                                                                                 needed)
    images: dict[str, ImageInfo] = {}
    told = threading.Event()
    lock = threading.Lock()
    with BuildDisplay(console) as display:
        display.expect([t.name for t in (base, *others)])
        builder = (builder_factory or Builder)(cache, log=console.print, status=display.status,
                                               output=output)

        def build(target: BuildTarget) -> None:
            built = builder.build(target)
            image = short(built.image.image_id)
            how = (f"image {image} ({built.seconds:.1f} s)" if target.kind == "base" else
                   f"built, image {image}, in {built.seconds:.1f} s" if built.rebuilt else
                   f"up to date (image {image})")
            display.done(target.name, how)
            with lock:
                images[target.name] = built.image
                ready = first_relay in images and not told.is_set()
                if ready:
                    told.set()
            if ready:
                services_ready(dict(images))

        build(base)
        with ThreadPoolExecutor(max_workers=max(1, jobs or default_jobs()),
                                thread_name_prefix="build") as pool:
            futures = [pool.submit(build, target) for target in others]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in finished:
                failure = future.exception()
                if failure is not None:
                    for pending in futures:
                        pending.cancel()  # not yet started: never started
                    raise failure
    resolved = {target.name: images[target.name] for target in (base, *others)}
    members = [(key, image.snapshot) for key, image in resolved.items()
               if image.snapshot and image.snapshot.startswith("snapshots/")]
    # what this pass's zip stores of its snapshots, made now and once (controller.images.delta)
    delta.prepare({snapshot: cache.path(snapshot) for _, snapshot in members
                   if cache.path(snapshot).is_file()}, members, console.print)
    return resolved
