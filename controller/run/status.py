"""`status <pass>`: progress of a pass submitted with --detach, read from the broker."""

from __future__ import annotations

import json
from typing import Any

from celery.result import AsyncResult, GroupResult
from rich.console import Console

from cluster.app import configure
from cluster.errors import UsageError
from cluster.options import redacted
from cluster.tasks import PassSummary, Rejected, read_result
from controller.results.registered import PASS_KEY


def show_status(name: str, broker: str, console: Console) -> int:
    app = configure(broker, 120)
    with app.connection_for_write() as conn:
        raw = conn.default_channel.client.get(PASS_KEY.format(name))  # type: ignore[attr-defined]  # kombu's Redis channel
    if raw is None:
        raise UsageError("PASS_NAME", f"no pass named {name!r} on {redacted(broker)}")
    info = json.loads(raw)
    group = GroupResult.restore(info["group"], app=app)
    done = passed = failed = 0
    for child in (group.results or []) if group else []:
        if not child.ready():
            continue
        done += 1
        read = read_result(child.result) if child.successful() else None
        ok = read is not None and not isinstance(read, Rejected) and read.ok
        passed, failed = passed + ok, failed + (not ok)
    final: AsyncResult[Any] = AsyncResult(info["aggregate"], app=app)
    console.print(f"{name}: {done}/{info['total']} tests done, {passed} passed, {failed} failed")
    if final.ready() and final.successful():
        summary = PassSummary.model_validate(final.result)
        where = summary.results_yaml or "the folder its submit wrote them to"
        console.print(f"finished: results in {where}, zip {summary.test_pass_zip}")
        for note in summary.error_tests:
            console.print(f"ERROR {note.name}: {note.reason} [{note.host}]", markup=False)
        return summary.exit_code
    console.print("running" if not final.ready() else f"aggregate failed: {final.result!r}")
    return 0 if not final.ready() else 3
