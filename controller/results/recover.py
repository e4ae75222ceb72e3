"""Passes whose chord callback was lost: every test has a stored result, but `aggregate` never ran
(its message lost, the chord's counter gone) or failed. Whoever notices first finishes the pass
from the stored results: the reporter (`LostCallbacks`, for every pass on its broker, detached
ones included) within REPORTER_GRACE_S + SCAN_S of the last result, else an attached `submit`
after SUBMIT_GRACE_S; both well inside 30 s. The result is stored under the aggregate's own id,
so whoever waits for it (an attached submit, `status`) sees the pass finished as if the callback
had run. A claim on the broker (`claim`) makes sure only one of them, or the callback itself if
it turns up late, writes the pass.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.result import AsyncResult, GroupResult

from cluster.cache import Cache
from controller.results.registered import PASS_KEY, PASS_NAME, finish_registered

log = logging.getLogger("holepunch.reporter")

REPORTER_GRACE_S = 10   # after the last result: the callback's normal latency is well below
SUBMIT_GRACE_S = 20     # later than the reporter's, so one attached to a reporter lets it act
SCAN_S = 5
SPEC_KEY = PASS_KEY + ":spec"          # the aggregate's spec (the chord body's argument)
FINISHER_KEY = PASS_KEY + ":finisher"  # who finishes the pass: aggregate, reporter or submit
CLAIM_TTL = 7 * 24 * 3600


def claim(client, name: str, who: str) -> bool:
    """True when `who` may finish pass `name`: the first to ask wins, once."""
    return bool(client.set(FINISHER_KEY.format(name), who, nx=True, ex=CLAIM_TTL))


def finisher(client, name: str) -> str | None:
    value = client.get(FINISHER_KEY.format(name))
    return value.decode() if isinstance(value, bytes) else value


def stored_payloads(group) -> list[object] | None:
    """Every test's stored result in chord order (None for one that failed), or None while
    some test has none yet."""
    payloads = []
    for child in group.results:
        if not child.ready():
            return None
        payloads.append(child.result if child.successful() else None)
    return payloads


def lost_note(who: str) -> str:
    return (f"the pass's chord callback (aggregate) never finished after every test had "
            f"reported: finished by {who} from the stored results")


class LostCallbacks:
    """The reporter's watch over every registered pass on its broker."""

    def __init__(self, app, cache: Cache, grace: float = REPORTER_GRACE_S,
                 clock: Callable[[], float] = time.monotonic):
        self.app, self.cache, self.grace, self.clock = app, cache, grace, clock
        self.complete_since: dict[str, float] = {}
        self.done: set[str] = set()

    def scan(self) -> list[str]:
        """Finish the passes whose callback is overdue; their names."""
        finished = []
        with self.app.connection_for_write() as conn:
            client = conn.default_channel.client
            for key in client.scan_iter(match=PASS_KEY.format("*"), count=500):
                name = (key.decode() if isinstance(key, bytes) else key).split(":", 2)[2]
                if name in self.done or not PASS_NAME.fullmatch(name):
                    continue  # a pass's :spec or :finisher key, or one seen through
                try:
                    if self._check(client, name):
                        finished.append(name)
                except Exception:  # noqa: BLE001 - one broken pass must not stop the watch
                    log.exception("checking pass %s for a lost callback", name)
                    self.done.add(name)
        return finished

    def _check(self, client, name: str) -> bool:
        raw = client.get(PASS_KEY.format(name))
        info = json.loads(raw) if raw else {}
        if "group" not in info or "aggregate" not in info:
            return False  # still being submitted
        aggregate: AsyncResult[Any] = AsyncResult(info["aggregate"], app=self.app)
        if aggregate.successful():
            self.done.add(name)
            return False
        group = GroupResult.restore(info["group"], app=self.app)
        payloads = stored_payloads(group) if group is not None else None
        if payloads is None:
            self.complete_since.pop(name, None)
            return False
        since = self.complete_since.setdefault(name, self.clock())
        if self.clock() - since < self.grace:
            return False
        spec_raw = client.get(SPEC_KEY.format(name))
        self.done.add(name)
        if spec_raw is None or not claim(client, name, "reporter"):
            return False  # no spec to finish it from, or someone else is finishing it
        spec = json.loads(spec_raw)
        spec["extraLog"] = [*spec.get("extraLog", []), lost_note("the reporter")]
        summary = finish_registered(payloads, spec, lambda n: client.get(PASS_KEY.format(n)),
                                    self.cache)
        self.app.backend.store_result(info["aggregate"], summary.to_message(), "SUCCESS")
        log.warning("pass %s: %s", name, lost_note("the reporter"))
        return True

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(SCAN_S):
            try:
                self.scan()
            except Exception as exc:  # noqa: BLE001 - a broker restart: try again next time
                log.warning("lost-callback watch: %s", exc)

    def start(self) -> threading.Event:
        stop = threading.Event()
        threading.Thread(target=self.run_forever, args=(stop,), name="lost-callbacks",
                         daemon=True).start()
        return stop
