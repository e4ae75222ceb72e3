"""Benchmark: expand and write a 10,000-test matrix; render results.md for 10,000 records.

Run: .venv/bin/python bench/matrix.py   (prints figures; asserts nothing)
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

from cluster.cache import Cache
from cluster.matrix import matrix_to_yaml
from cluster.models import PeerRecord, Results, ResultsMetadata, Status, TestRecord
from controller.plan.matrix import plan_matrix
from controller.results.report import render_results_md, summarize

IMPLS = 100  # 100 x 100 pairs x 1 transport = 10,000 tests


def make_repo(root: Path) -> None:
    lines = ["implementations:"]
    for i in range(IMPLS):
        folder = root / "impl" / "lang" / f"v{i}"
        folder.mkdir(parents=True)
        (folder / "Makefile").write_text(f"# v{i}\n")
        lines += [f"  - id: lang-v{i}", f"    source: {{type: local, path: impl/lang/v{i}}}",
                  "    transports: [tcp]"]
    (root / "impls.yaml").write_text("\n".join(lines) + "\n")
    (root / "test-selection.yaml").write_text("test-filter: []\ntest-ignore: [experimental]\n")


def timed(label: str, func):
    tracemalloc.start()
    start = time.perf_counter()
    value = func()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{label:<44} {elapsed:7.3f} s   peak {peak / 2**20:6.1f} MiB")
    return value


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "repo", Cache(Path(tmp) / "cache")
        make_repo(root)
        plan = timed("expand + write 10,000-test matrix (cold)",
                     lambda: plan_matrix(root, "full", None, None, cache))
        assert plan.matrix.metadata.total_tests == IMPLS * IMPLS and not plan.from_cache
        timed("same matrix again (cache hit)", lambda: plan_matrix(root, "full", None, None, cache))
        text = timed("serialise matrix to YAML", lambda: matrix_to_yaml(plan.matrix))
        print(f"{'matrix file size':<44} {len(text) / 2**20:7.2f} MiB")

        records = [TestRecord(name=t.name, status=Status.PASS if i % 7 else Status.FAIL,
                              rtt_ms=200.0 + i % 5, transport=t.variant,
                              dialer=PeerRecord(version=t.dialer),
                              listener=PeerRecord(version=t.listener))
                   for i, t in enumerate(plan.matrix.tests)]
        results = Results(metadata=ResultsMetadata(test_pass="bench"),
                          summary=summarize(records, total=len(records)), tests=records)
        markdown = timed("render results.md for 10,000 records", lambda: render_results_md(results))
        print(f"{'results.md size':<44} {len(markdown) / 2**20:7.2f} MiB")


if __name__ == "__main__":
    main()
