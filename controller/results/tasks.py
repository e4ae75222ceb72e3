"""The chord's body: `aggregate` runs on the controller's queue and writes the pass's outputs.

Also `reporter_sees`: before a detached pass, `submit` asks the reporter whether it can see and
write the pass's output folder (the reporter writes a detached pass's outputs itself).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from cluster.app import app
from cluster.cache import Cache, default_cache_root
from cluster.errors import InfrastructureError
from cluster.tasks import AGGREGATE
from controller.results.recover import claim, finisher
from controller.results.registered import PASS_KEY, finish_registered

REPORTER_SEES = "holepunch.reporter_sees"
PROBE_PREFIX = ".holepunch-probe-"
_cache: Cache | None = None


def use_cache(cache: Cache) -> None:
    """The reporter's own cache (its --cache-dir): where test-pass zips go, whatever a message says."""
    global _cache
    _cache = cache


RECOVERED_WAIT_S = 120


@app.task(name=AGGREGATE, acks_late=True, bind=True)
def aggregate(self, payloads: list[object], spec_data: dict) -> dict:
    with self.app.connection_for_write() as conn:
        client = conn.default_channel.client
        name = spec_data.get("name") if isinstance(spec_data, dict) else None
        if isinstance(name, str) and not claim(client, name, "aggregate") \
                and finisher(client, name) != "aggregate":
            # Finished (or being finished) from the stored results while this callback was
            # overdue (controller.results.recover): its summary is this task's result too.
            return _recovered(self)
        return finish_registered(payloads, spec_data, lambda name: client.get(PASS_KEY.format(name)),
                                 _cache or Cache(default_cache_root())).to_message()


def _recovered(task) -> dict:
    deadline = time.monotonic() + RECOVERED_WAIT_S
    while time.monotonic() < deadline:
        meta = task.backend.get_task_meta(task.request.id)
        if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
            return meta["result"]
        time.sleep(1)
    raise InfrastructureError(f"aggregate {task.request.id}: the pass was claimed by its "
                              f"recovery, which stored no result in {RECOVERED_WAIT_S} s")


@app.task(name=REPORTER_SEES)
def reporter_sees(folder: str, token: str) -> bool:
    """True when `folder` holds submit's probe file with `token` and this host can write there:
    the same folder, not merely one of the same name on another host."""
    if not re.fullmatch(r"[0-9a-f]{32}", token):
        return False
    probe = Path(folder) / f"{PROBE_PREFIX}{token}"
    try:
        if probe.read_text(encoding="utf-8") != token:
            return False
        fd, name = tempfile.mkstemp(dir=folder, prefix=PROBE_PREFIX, suffix=".tmp")
        os.close(fd)
        os.unlink(name)
    except OSError:
        return False
    return True
