"""Benchmark: where a warm `submit` spends its time before the first test can begin.

Runs, in this process and in the order `submit` does, each step up to the chord (nothing is
enqueued, no container is started) and prints its seconds; beside it, how long a
`holepunch-worker` takes from its start until it answers a ping on a private broker (the
embedded default starts one first thing; the first test begins once both are done). Needs the
images built (warm: nothing to build). Prints figures; asserts nothing.

    .venv/bin/python bench/startup.py [--root DIR] [--test-filter S]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.monotonic()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO)
    parser.add_argument("--test-filter", default=None)
    args = parser.parse_args()
    steps: list[tuple[str, float]] = []
    last = time.monotonic()

    def step(name: str) -> None:
        nonlocal last
        now = time.monotonic()
        steps.append((name, now - last))
        last = now

    from rich.console import Console

    from cluster.cache import Cache, default_cache_root
    from controller.plan.matrix import plan_matrix
    from controller.run import submit as submit_module
    from controller.run.outputs import check_outputs
    from controller.run.pass_plan import SubmitOptions, pass_outputs
    from controller.run.probe import engine_version, git_info, system_info
    from controller.run.where import where_pass_runs
    step("imports (controller.run.submit)")
    cache = Cache(default_cache_root())
    options = SubmitOptions(root=args.root, test_filter=args.test_filter)
    plan = plan_matrix(args.root, "full", args.test_filter, None, cache)
    step(f"matrix ({len(plan.matrix.tests)} tests)")
    where = where_pass_runs(None, False, None, options.timeout)
    check_outputs(pass_outputs(options), where, options.timeout, options.controller_queue)
    step("output checks")
    engine = engine_version()
    step("engine version")
    images = submit_module.build_images(options, cache, plan.impls, plan.matrix,
                                        Console(file=io.StringIO()))
    step(f"images resolved ({len(images)})")
    git_info(args.root)
    system_info(engine)
    step("git and system probes")
    print(f"python start -> bench main: {last - STARTED - sum(s for _, s in steps):.2f} s")
    for name, seconds in steps:
        print(f"  {name:<34} {seconds:6.2f} s")
    print(f"  {'total, submit before its chord':<34} {sum(s for _, s in steps):6.2f} s")
    print(f"worker boot until it answers a ping: {worker_boot():.2f} s")


def worker_boot() -> float:
    """From spawning `holepunch-worker` (as the embedded default does) to its "ready." line."""
    port = 16405
    with tempfile.TemporaryDirectory(prefix="hp-bench-startup-") as tmp:
        redis_server = subprocess.Popen(["redis-server", "--port", str(port), "--bind",
                                         "127.0.0.1", "--save", "", "--dir", tmp],
                                        stdout=subprocess.DEVNULL, start_new_session=True)
        log = Path(tmp) / "worker.log"
        env = {**os.environ, "HOLEPUNCH_RUN_DIR": str(Path(tmp) / "run")}
        started = time.monotonic()
        worker = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "holepunch-worker"), "--broker",
             f"redis://127.0.0.1:{port}/0", "-n", "bench-startup", "--cache-dir",
             str(Path(tmp) / "cache"), "--lan-pool", "10.204.0.0/16", "--without-mingle", "-c",
             "4"], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        try:
            while " ready." not in log.read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() - started > 60:
                    raise RuntimeError("the worker did not get ready: " + log.read_text()[-2000:])
                time.sleep(0.01)  # the bench's own sampling, not the harness's
            return time.monotonic() - started
        finally:
            worker.terminate()
            worker.wait(60)
            subprocess.run([str(REPO / ".venv" / "bin" / "holepunch-worker"), "--cleanup", "-n",
                            "bench-startup", "--cache-dir", str(Path(tmp) / "cache"),
                            "--lan-pool", "10.204.0.0/16"], env=env, capture_output=True,
                           check=False)
            redis_server.terminate()
            redis_server.wait(10)


if __name__ == "__main__":
    main()
