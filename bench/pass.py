"""Benchmark: a real pass of 13 tests through `holepunch-controller submit` on the embedded default.

rust-v0.57, go-v0.51 and python-v0.8 against each other (tcp; quic where both offer it), the
three newest non-js clients, so every figure is about the machinery rather than known failures.

Figures, printed (asserts nothing):
- wall time of the whole `submit`, warm: the cache (~/.cache/holepunch or --cache-dir) and the
  engine as they are, images up to date;
- with --cold, also the same pass on an empty cache dir first (but for the base rootfs, which
  only debootstrap from Debian's mirror could make again, and the wheelhouse .ci/setup makes),
  from a hard-linked copy of the checkout without its image.yaml files: every snapshot zipped
  and packed solid again from the vendored folders (unused vendored crates stubbed), every
  image rebuilt (cargo and go compile from nothing: their
  target dirs live in the cache). Docker's engine is not emptied: its layer cache still serves a
  layer whose context is byte-identical (the base image is a deterministic load of the rootfs;
  the go, python and router contexts reproduce; rust binaries embed their build path, so not);
- time from starting `submit` to the first test beginning on the engine (its containers
  created: a worker has taken it, the seed's "Starting:") and to its first container starting
  (docker events), beside: selection + images resolved, chord submitted;
- the test-pass zip: size and the time the aggregate took to write it.

Run as root with the images built (bash .ci/test builds them):
    .venv/bin/python bench/pass.py [--cold] [--cache-dir DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cluster.cache import default_cache_root  # noqa: E402

CONTROLLER = str(Path(sys.executable).with_name("holepunch-controller"))
PAIRS = ["rust-v0.57 x rust-v0.57", "rust-v0.57 x go-v0.51", "go-v0.51 x rust-v0.57",
         "go-v0.51 x go-v0.51", "python-v0.8 x python-v0.8", "python-v0.8 x rust-v0.57",
         "python-v0.8 x go-v0.51", "rust-v0.57 x python-v0.8", "go-v0.51 x python-v0.8"]
MARKS = {"selected": "tests selected", "cluster": "embedded cluster:",
         "submitted": "tests submitted"}


class FirstTestStart:
    """When the first test began on the engine (its containers created: the worker has taken it
    and set up its networks, the seed's "Starting:") and when its first container started
    (docker events on the label holepunch.role=test; network events carry no labels). Routers
    started in standby before any test (worker.warmrouters, label holepunch.warm) are no test's
    beginning: a test on them begins with its clients' creates."""

    def __init__(self) -> None:
        self.began: float | None = None
        self.at: float | None = None
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "event=create",
             "--filter", "event=start",
             # every embedded submit is a host of its own (<hostname>-embedded-<pid>): any test's
             # containers count, so run the bench alone on its engine
             "--filter", "label=holepunch.role=test",
             "--format", "{{.Type}} {{.Action}} {{.TimeNano}} "
                         'warm={{index .Actor.Attributes "holepunch.warm"}}'],
            stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            _, action, nanos, warm = line.split()
            if warm != "warm=":
                continue  # a router in standby, made before the test was known
            if action == "create" and self.began is None:
                self.began = int(nanos) / 1e9
            if action == "start" and self.at is None:
                self.at = int(nanos) / 1e9
                return

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


CI_IMAGES = ["rust-v0.57", "go-v0.51", "python-v0.8", "js-v3.3"]


def run_pass(cache: Path | None, out: Path, workers: int | None, root: Path = REPO,
             test_filter: str | None = None) -> dict:
    selection = (["--test-filter", "|".join(PAIRS), "--test-ignore", ""] if test_filter is None
                 else ["--test-filter", test_filter])
    argv = [CONTROLLER, *(["--cache-dir", str(cache)] if cache else []), "submit",
            "--root", str(root), "-o", str(out), *selection,
            *(["--workers", str(workers)] if workers else [])]
    events = FirstTestStart()
    time.sleep(0.5)  # docker events is listening
    started = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO)
    marks: dict[str, float] = {}
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        for key, text in MARKS.items():
            if text in line and key not in marks:
                marks[key] = time.time() - started
    code = proc.wait()
    wall = time.time() - started
    events.stop()
    output = "".join(lines)
    zip_line = re.search(r"test-pass zip: ([\d.]+) MB, written in ([\d.]+) s", output)
    summary = re.search(r"(complete|PARTIAL): (.*)", output)
    before_first = next((i for i, line in enumerate(lines) if MARKS["submitted"] in line),
                        len(lines))
    return {"exit": code, "wall": wall, "marks": marks, "lines": len(lines),
            "lines_before_tests": before_first, "durations": durations(out / "results.yaml"),
            "first_test": events.at - started if events.at else None,
            "first_began": events.began - started if events.began else None,
            "zip_mb": float(zip_line.group(1)) if zip_line else None,
            "zip_s": float(zip_line.group(2)) if zip_line else None,
            "summary": summary.group(0) if summary else output[-2000:],
            "results": out / "results.yaml",
            "rebuilt": output.count("building from") + output.count(" built, image "), "tail": output[-3000:]}


def durations(results: Path) -> dict[str, list[float]]:
    """Seconds per test from results.yaml, apart for known failures and the others."""
    from cluster.yamlio import read_yaml
    found: dict[str, list[float]] = {"expected to pass": [], "known failures": []}
    if not results.is_file():
        return found
    for record in read_yaml(results).get("tests") or []:
        if record.get("duration"):
            key = "known failures" if record.get("expectedFailure") else "expected to pass"
            found[key].append(float(str(record["duration"]).rstrip("s")))
    return found


def cold_checkout(target: Path) -> Path:
    """The checkout hard-linked (vendored folders included: zipping them is part of a cold
    build) without what builds left in it (image.yaml, build/), so that every image is built."""
    target.mkdir()
    for name in ("impls.yaml", "test-selection.yaml", "router", "rust-relay", "impl"):
        subprocess.run(["cp", "-al", str(REPO / name), str(target / name)], check=True)
    for made in [*target.glob("**/image.yaml"), *target.glob("router/build"),
                 *target.glob("rust-relay/build"), *target.glob("impl/*/*/build")]:
        if made.is_dir():
            shutil.rmtree(made)
        else:
            made.unlink()
    return target


def seed_rootfs(warm: Path, cold: Path) -> None:
    """What a cold cache gets: the base rootfs (debootstrap needs Debian's mirror, which a
    benchmark here must not reach) and the wheelhouse (`bash .ci/setup` makes it before any
    pass), hard-linked from the warm cache."""
    for folder in ("rootfs", "wheels"):
        (cold / folder).mkdir(parents=True)
        for path in (warm / folder).iterdir() if (warm / folder).is_dir() else []:
            if path.is_file() and not path.name.startswith("."):
                os.link(path, cold / folder / path.name)


def show(label: str, figures: dict) -> None:
    marks = figures["marks"]
    first, began = figures["first_test"], figures["first_began"]
    print(f"{label}: exit {figures['exit']}, wall {figures['wall']:.1f} s, "
          f"{figures['rebuilt']} images built from snapshots; {figures['summary'].strip()}")
    print(f"  submit -> first test begun on the engine: "
          f"{'n/a' if began is None else f'{began:.1f} s'}, its first container started: "
          f"{'n/a' if first is None else f'{first:.1f} s'} (selection + images "
          f"{marks.get('selected', float('nan')):.1f}..{marks.get('cluster', float('nan')):.1f} s, "
          f"chord submitted at {marks.get('submitted', float('nan')):.1f} s)")
    print(f"  terminal: {figures['lines']} lines, {figures['lines_before_tests']} before the "
          f"tests were submitted")
    spans = figures["durations"]
    total = sum(sum(v) for v in spans.values()) or 1.0
    for kind, values in spans.items():
        if values:
            print(f"  {kind}: {len(values)} tests, median {statistics.median(values):.1f} s, max "
                  f"{max(values):.1f} s, {100 * sum(values) / total:.0f} % of test-seconds")
    if figures["zip_mb"] is not None:
        print(f"  test-pass zip: {figures['zip_mb']:.1f} MB, written in {figures['zip_s']:.1f} s")
    if figures["exit"] not in (0, 1):
        print(figures["tail"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="also run once on an empty cache dir")
    parser.add_argument("--cache-dir", type=Path, default=None, help="the warm cache (default: "
                        "$HOLEPUNCH_CACHE, else ~/.cache/holepunch)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--ci-images", action="store_true",
                        help="instead: once, every test of the default selection among the four "
                             "CI images (" + ", ".join(CI_IMAGES) + "), known failures included")
    args = parser.parse_args()
    if args.ci_images:
        with tempfile.TemporaryDirectory(prefix="hp-bench-pass-") as tmp:
            show("CI images, default selection", run_pass(
                args.cache_dir, Path(tmp) / "ci", args.workers,
                test_filter="|".join(f"{a} x {b}" for a in CI_IMAGES for b in CI_IMAGES)))
        return
    print(f"{len(PAIRS)} dialer x listener pairs, 13 tests (tcp; quic for rust/go pairs)")
    with tempfile.TemporaryDirectory(prefix="hp-bench-pass-") as tmp:
        if args.cold:
            cold_cache = Path(tmp) / "cold-cache"
            seed_rootfs(default_cache_root(args.cache_dir), cold_cache)
            checkout = cold_checkout(Path(tmp) / "checkout")
            show("cold (empty cache dir)", run_pass(cold_cache, Path(tmp) / "cold", args.workers,
                                                    checkout))
            sizes = {path.name[:12]: path.stat().st_size / 1e6
                     for path in (cold_cache / "snapshots").glob("*.zip")}
            print("  snapshots zipped cold (MB):",
                  ", ".join(f"{name} {mb:.1f}" for name, mb in sorted(sizes.items())))
        show("warm", run_pass(args.cache_dir, Path(tmp) / "warm", args.workers))
        show("warm again", run_pass(args.cache_dir, Path(tmp) / "warm2", args.workers))


if __name__ == "__main__":
    main()
