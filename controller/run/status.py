"""`status <pass>`: progress of a pass submitted with --detach, read from the broker."""

from __future__ import annotations

import json

from celery.result import AsyncResult, GroupResult
from rich.console import Console

from cluster.app import configure
from cluster.errors import UsageError
from cluster.models import Status, TestRecord

PASS_KEY = "holepunch:pass:{}"


def show_status(name: str, broker: str, console: Console) -> int:
    app = configure(broker, 120)
    with app.connection_for_write() as conn:
        raw = conn.default_channel.client.get(PASS_KEY.format(name))
    if raw is None:
        raise UsageError("PASS_NAME", f"no pass named {name!r} on {broker}")
    info = json.loads(raw)
    group = GroupResult.restore(info["group"], app=app)
    done = passed = failed = 0
    for child in group.results if group else []:
        if not child.ready():
            continue
        done += 1
        payload = child.result if child.successful() else None
        if isinstance(payload, dict) and "record" in payload:
            record = TestRecord.model_validate(payload["record"])
            ok = record.status is not Status.FAIL or record.expected_failure
            passed, failed = passed + ok, failed + (not ok)
        else:
            failed += 1
    final = AsyncResult(info["aggregate"], app=app)
    console.print(f"{name}: {done}/{info['total']} tests done, {passed} passed, {failed} failed")
    if final.ready() and final.successful():
        summary = final.result
        console.print(f"finished: results in {summary['resultsYaml']}, zip {summary['testPassZip']}")
        return summary["exitCode"]
    console.print("running" if not final.ready() else f"aggregate failed: {final.result!r}")
    return 0 if not final.ready() else 3
