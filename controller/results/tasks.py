"""The chord's body: `aggregate` runs on the controller's queue and writes the pass's outputs.

Also `reporter_sees`: before a detached pass, `submit` asks the reporter whether it can see and
write the pass's output folder (the reporter writes a detached pass's outputs itself).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from cluster.app import app
from cluster.cache import Cache, default_cache_root
from cluster.tasks import AGGREGATE
from controller.results.registered import PASS_KEY, finish_registered

REPORTER_SEES = "holepunch.reporter_sees"
PROBE_PREFIX = ".holepunch-probe-"
_cache: Cache | None = None


def use_cache(cache: Cache) -> None:
    """The reporter's own cache (its --cache-dir): where test-pass zips go, whatever a message says."""
    global _cache
    _cache = cache


@app.task(name=AGGREGATE, acks_late=True, bind=True)
def aggregate(self, payloads: list[object], spec_data: dict) -> dict:
    with self.app.connection_for_write() as conn:
        client = conn.default_channel.client
        return finish_registered(payloads, spec_data, lambda name: client.get(PASS_KEY.format(name)),
                                 _cache or Cache(default_cache_root())).to_message()


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
