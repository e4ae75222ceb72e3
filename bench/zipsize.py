"""Benchmark: the test-pass zip of a pass, its size and the time to write it, by implementation set.

What a test-pass zip weighs comes from the implementations a pass ran (each bundles what an
offline rebuild needs: its snapshot with vendored dependencies), the base rootfs and the Python
wheels; each test adds only its log and compose file. This writes the zip the chord's aggregate
would write, with controller.results.finish itself, for passes of the built images without running them
(the records say pass; each log is a real-sized log), and prints per pass: tests, zip size and
the seconds to write it, and every part (each snapshot solid, or as a delta from another of its
family, controller.images.delta). Solid snapshots (controller.images.solid) and deltas are made at
build time; one made here for the first time is said so, its making time is then in the figure.

Needs the images of the chosen implementations built (`holepunch-controller build ID ...`): a
selection naming an unbuilt implementation is skipped with the reason.

    .venv/bin/python bench/zipsize.py [--cache-dir DIR] [--log FILE]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cluster.cache import Cache, default_cache_root  # noqa: E402
from cluster.matrix import matrix_to_yaml  # noqa: E402
from cluster.models import ImageInfo, PeerRecord, Settings, Status, TestRecord, log_file_name  # noqa: E402
from cluster.tasks import RunResult  # noqa: E402
from cluster.yamlio import load_model  # noqa: E402
from controller.images import delta, solid  # noqa: E402
from controller.images.sources import source_digest  # noqa: E402
from controller.plan.matrix import plan_matrix  # noqa: E402
from controller.results.finish import PassSpec, finish_pass  # noqa: E402

# (label, test-filter): every test among these implementations, both transports.
PASSES = [
    ("13 tests: rust-v0.57, go-v0.51, python-v0.8 (bench/pass.py)",
     "rust-v0.57 x rust-v0.57|rust-v0.57 x go-v0.51|go-v0.51 x rust-v0.57|go-v0.51 x go-v0.51|"
     "python-v0.8 x python-v0.8|python-v0.8 x rust-v0.57|python-v0.8 x go-v0.51|"
     "rust-v0.57 x python-v0.8|go-v0.51 x python-v0.8"),
    ("rust-v0.57, go-v0.51, go-v0.48, python-v0.8", None),
    ("rust-v0.57, go-v0.51, python-v0.8, js-v3.3 (the CI images)", None),
    ("rust-v0.57, go-v0.51, go-v0.48, python-v0.8, js-v3.3", None),
    ("rust-v0.57, rust-v0.53, go-v0.51, go-v0.48, python-v0.8", None),
    ("the full pass: every implementation, the default selection", "(default)"),
]
INFRASTRUCTURE = {"base": "impl/base", "router": "router", "rust-relay": "rust-relay"}


def impl_ids(label: str) -> list[str]:
    return [part.strip().split(" ")[0] for part in label.split(":")[-1].split(",")]


def filter_for(ids: list[str]) -> str:
    return "|".join(f"{a} x {b}" for a in ids for b in ids)


def image_of(folder: Path, cache: Cache | None = None) -> ImageInfo | None:
    """The folder's image.yaml; with `cache` (--snapshots), for a folder never built, an image
    that stands for it: its current snapshot, if the cache holds it (made by `make vendor` and
    a build's first step), under a made-up ID. The zip holds the snapshot, not the image."""
    path = folder / "image.yaml"
    if path.is_file():
        return load_model(ImageInfo, path)
    if cache is None:
        return None
    snapshot = f"snapshots/{source_digest(folder)}.zip"
    if not cache.path(snapshot).is_file():
        return None
    return ImageInfo(image_id=hashlib.sha256(snapshot.encode()).hexdigest(),
                     image_name=f"holepunch-{folder.parent.name}-{folder.name}",
                     built_at="2026-12-03T00:00:00Z", arch="x86_64", snapshot=snapshot)


def measure(label: str, test_filter: str | None, cache: Cache, log_text: str,
            snapshots: bool = False) -> None:
    matrix = (plan_matrix(REPO, "full", None, None, cache) if test_filter is None
              else plan_matrix(REPO, "full", test_filter, "", cache)).matrix
    needed = sorted({n for t in matrix.tests for n in (t.dialer, t.listener)})
    images: dict[str, ImageInfo] = {}
    for key, folder in INFRASTRUCTURE.items():
        images[key] = image_of(REPO / folder)
    for impl in needed:
        lang, version = impl.rsplit("-", 1)
        images[impl] = image_of(REPO / "impl" / lang / version, cache if snapshots else None)
    missing = [key for key, image in images.items() if image is None]
    if missing:
        print(f"{label}: skipped, not built: {', '.join(missing)}")
        return
    payloads = []
    for test in matrix.tests:
        record = TestRecord(
            name=test.name, status=Status.PASS, exit_code=0, rtt_ms=201.0, duration="7.0s",
            docker_compose=f"docker-compose/{abs(hash(test.name)):064d}.yaml",
            dialer=PeerRecord(version=test.dialer, image_id=images[test.dialer].image_id,
                              snapshot=images[test.dialer].snapshot),
            listener=PeerRecord(version=test.listener, image_id=images[test.listener].image_id,
                                snapshot=images[test.listener].snapshot),
            log_file=log_file_name(test.name), transport=test.variant, host="bench")
        payloads.append(RunResult(record=record, log=log_text, compose=f"# compose of {test.name}\n"
                                  + "x: y\n" * 60).to_message())
    with tempfile.TemporaryDirectory(prefix="hp-bench-zip-") as tmp:
        spec = PassSpec(name=f"hole-punch-bench-{time.time_ns()}", kind="full",
                        base_dir=str(REPO / "impl" / "base"), output_dir=tmp,
                        cache_dir=str(cache.root), started_at="2026-11-30T00:00:00Z",
                        matrix_yaml=matrix_to_yaml(matrix), images=images,
                        settings=Settings.model_validate({
                            "testPass": {"name": "bench", "kind": "full"},
                            "execution": {"cacheDir": str(cache.root)}}))
        unpacked = [image.snapshot for image in images.values() if image.snapshot
                    and image.snapshot.endswith(".zip")
                    and not solid.solid_path(cache.path(image.snapshot)).is_file()]
        snapshots = {image.snapshot: cache.path(image.snapshot) for image in images.values()
                     if image.snapshot and image.snapshot.startswith("snapshots/")}
        plan = delta.pass_deltas(snapshots, [(key, image.snapshot) for key, image in images.items()
                                             if image.snapshot in snapshots])
        new_deltas = [name for name, reference in plan.items() if not delta.manifest_path(
            delta.delta_path(snapshots[name], snapshots[reference])).is_file()]
        started = time.monotonic()
        summary = finish_pass(spec, payloads)
        seconds = time.monotonic() - started
    path = Path(summary.test_pass_zip)
    parts: collections.Counter[str] = collections.Counter()
    labels = {image.snapshot.split("/")[-1][:12]: key for key, image in images.items()
              if image.snapshot and image.snapshot.startswith("snapshots/")}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            inner = info.filename.split("/", 1)[1]
            part = inner.split("/", 1)[0] if "/" in inner else "(top)"
            if part == "snapshots":
                name = inner.split("/", 1)[1]
                form = ("delta" if ".delta." in name else "thin" if ".thin." in name
                        else "solid" if name.endswith(solid.SUFFIX) else "zip")
                part = f"{labels.get(name[:12], name[:12])} ({form})"
            parts[part] += info.compress_size
    size = path.stat().st_size
    path.unlink()
    made = [f"{len(unpacked)} snapshots packed solid"] if unpacked else []
    made += [f"{len(new_deltas)} deltas made"] if new_deltas else []
    print(f"{label}: {len(matrix.tests)} tests, zip {size / 1e6:.1f} MB written in "
          f"{summary.test_pass_zip_seconds:.1f} s (finish_pass {seconds:.1f} s"
          + (f", of which {' and '.join(made)} for the first time)" if made else ")"))
    print("  " + ", ".join(f"{name} {part / 1e6:.2f}" for name, part in parts.most_common()
                           if part >= 10_000) + " (MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--snapshots", action="store_true",
                        help="an implementation never built counts by its snapshot, if the cache "
                             "holds it (a zip holds snapshots, not images)")
    parser.add_argument("--log", type=Path, default=None,
                        help="a real test log to stand for every test's (default: 30 KB of text)")
    args = parser.parse_args()
    cache = Cache(default_cache_root(args.cache_dir))
    log_text = args.log.read_text() if args.log else ("dialer | a line of a test's log\n" * 1000)
    for label, test_filter in PASSES:
        if test_filter == "(default)":
            measure(label, None, cache, log_text, args.snapshots)
            continue
        measure(label.split(" (")[0] if test_filter is None else label,
                test_filter or filter_for(impl_ids(label.split(" (")[0])), cache, log_text,
                args.snapshots)


if __name__ == "__main__":
    main()
