"""Where a pass runs, decided once from `--broker` and `--detach`: on the embedded default or on
a running cluster's broker.

`where_pass_runs` is the only place that looks at the two flags to choose; everything after it
(the CLI starting the embedded cluster first thing, image export for remote workers,
settings.yaml's `execution.broker`, the pass's broker URL) reads the decision it returns. The
standard library only, like controller.run.embedded: the CLI imports it before anything heavy.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cluster.errors import UsageError
from controller.run.embedded import EmbeddedCluster


@dataclass(frozen=True)
class EmbeddedDefault:
    """No broker given: Redis, a worker and the reporter on this machine, for this pass only."""

    workers: int | None          # tests at once; None: the worker's default (two per core)
    max_test_timeout: int        # the longest a test may take: how long a warm stop waits
    label: Literal["embedded"] = "embedded"


@dataclass(frozen=True)
class ExternalBroker:
    """A running cluster's broker: its workers fetch the images, its reporter may finish."""

    broker: str
    detach: bool = False
    label: Literal["external"] = "external"


Where = EmbeddedDefault | ExternalBroker


def where_pass_runs(broker: str | None, detach: bool, workers: int | None,
                    timeout: int) -> Where:
    """The embedded default without a broker; `--detach` needs one (the embedded cluster ends
    with submit, so nothing would be left to finish the pass)."""
    if broker:
        return ExternalBroker(broker=broker, detach=detach)
    if detach:
        raise UsageError("--detach", "needs --broker: the embedded cluster ends with submit")
    return EmbeddedDefault(workers=workers, max_test_timeout=timeout)


def start_cluster(where: Where, cache_dir: Path) -> AbstractContextManager[EmbeddedCluster | None]:
    """The embedded cluster for `where` (entered: booting; left: stopped), or nothing to start."""
    if isinstance(where, EmbeddedDefault):
        return EmbeddedCluster(cache_dir, where.workers, where.max_test_timeout)
    return nullcontext()
