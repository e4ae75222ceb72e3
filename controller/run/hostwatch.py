"""The reporter's host watch: a lost worker host's tests go back on the queue within seconds.

Two daemon threads of the reporter process, each with its own broker connection:
  events  Celery's event stream (worker heartbeats every 2 s, task-received/started/...), fed to
          cluster.failover.HostWatch
  sweep   every HOST_WATCH_SWEEP_SECONDS: the hosts silent for DEAD_AFTER_SECONDS, and the
          unacknowledged messages they hold (kombu's `unacked` hash), each restored to the front
          of its queue in one transaction with a fresh delivery tag (so the lost host, should it
          come back, can neither acknowledge nor restore the re-run's message)
The decisions are in cluster/failover.py; this is the edge to Redis and Celery.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from celery import Celery, states

from cluster.celeryconfig import HOST_WATCH_SWEEP_SECONDS
from cluster.failover import LOST_KEY, HostWatch, Unacked, to_restore, unacked
from cluster.tasks import RUN_TEST

log = logging.getLogger("holepunch.hostwatch")


class HostWatcher:
    def __init__(self, app: Celery, watch: HostWatch | None = None,
                 tasks: frozenset[str] = frozenset({RUN_TEST})) -> None:
        self.app = app
        self.watch = watch or HostWatch()
        self.tasks = tasks  # the task names whose messages move (the tests)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.restored_total = 0

    def start(self) -> HostWatcher:
        for target, name in ((self._events, "holepunch-hostwatch-events"),
                             (self._sweeps, "holepunch-hostwatch-sweep")):
            threading.Thread(target=target, name=name, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    # --- events ---------------------------------------------------------------------------
    def _on_event(self, event: dict) -> None:
        with self.lock:
            self.watch.event(event, time.monotonic())

    def _events(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.app.connection() as conn:
                    receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
                    # wakeup: every worker sends a heartbeat now, so each is known at once
                    receiver.capture(limit=None, timeout=None, wakeup=True)
            except Exception as exc:  # noqa: BLE001 - a broker restart: reconnect
                log.warning("host watch: event stream lost (%s); reconnecting", exc)
                self.stopping.wait(2)

    # --- sweeps ---------------------------------------------------------------------------
    def _sweeps(self) -> None:
        while not self.stopping.wait(HOST_WATCH_SWEEP_SECONDS):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - a broker restart: try again next time
                log.warning("host watch: sweep failed (%s)", exc)

    def sweep(self) -> int:
        """Restore the messages of every dead host; how many were restored."""
        now = time.monotonic()
        with self.lock:
            dead = self.watch.dead(now)
        if not dead:
            return 0
        with self.app.connection_for_write() as conn:
            channel: Any = conn.default_channel  # kombu's Redis channel (client, unacked keys)
            client = channel.client
            raw = client.hgetall(channel.unacked_key)
            entries = [unacked(tag, value) for tag, value in raw.items()]
            with self.lock:
                unknown = [e.task_id for e in entries
                           if e.task_id and self.watch.holder(e.task_id) is None]
            started_on = self._started_on(unknown)
            chosen: list[tuple[Unacked, str, str]] = []  # entry, its task id, its dead holder
            with self.lock:
                for entry in to_restore(entries, self.watch, dead, started_on, self.tasks):
                    task_id = entry.task_id
                    host = self.watch.holder(task_id, started_on.get(task_id)) if task_id else None
                    if task_id and host:
                        chosen.append((entry, task_id, host))
            ttl = int(self.app.conf.result_expires)
            restored = [(task_id, host) for entry, task_id, host in chosen
                        if _restore(channel, entry, host, ttl)]
            with self.lock:
                lost: dict[str, list[str]] = {}
                for task_id, host in restored:
                    lost.setdefault(host, []).append(task_id)
                    self.watch.restored(task_id)
                silent = {host: self.watch.silent_for(host, now) for host in lost}
        for host, task_ids in sorted(lost.items()):
            log.warning("host watch: %s silent for %.1f s: %d of its tests back on the queue (%s)",
                        host, silent[host], len(task_ids), ", ".join(task_ids))
        self.restored_total += len(restored)
        return len(restored)

    def _started_on(self, task_ids: list[str]) -> dict[str, str]:
        """task id -> the host its stored STARTED state names."""
        if not task_ids:
            return {}
        backend: Any = self.app.backend  # the Redis result backend (get, get_key_for_task)
        found: dict[str, str] = {}
        for task_id in task_ids:
            raw = backend.get(backend.get_key_for_task(task_id))
            try:
                meta = json.loads(raw) if raw else None
            except ValueError:
                continue
            if meta and meta.get("status") == states.STARTED and isinstance(meta.get("result"), dict):
                host = meta["result"].get("hostname")
                if isinstance(host, str):
                    found[task_id] = host
        return found


def _restore(channel, entry: Unacked, host: str, ttl: int) -> bool:
    """Move one unacked message back to the front of its queue with a new delivery tag, and mark
    the old delivery lost (taken from `host`), in one transaction (WATCH on the unacked hash:
    an ack racing it wins and nothing is restored)."""
    client = channel.client
    tag = entry.tag
    key, index = channel.unacked_key, channel.unacked_index_key
    restored = False

    def move(pipe) -> None:
        nonlocal restored
        raw = pipe.hget(key, tag)
        pipe.multi()
        if not raw:
            restored = False
            return
        message, exchange, routing_key = json.loads(raw)
        message["properties"]["delivery_tag"] = str(uuid.uuid4())
        message["properties"].setdefault("delivery_info", {})["redelivered"] = True
        message.setdefault("headers", {})["redelivered"] = True
        pipe.zrem(index, tag)
        pipe.hdel(key, tag)
        pipe.set(LOST_KEY.format(tag), host, ex=ttl)
        for queue in channel._lookup(exchange, routing_key):
            priority = channel._get_message_priority(message, reverse=False)
            # Consumers pop from the right: the re-run is the next test a free slot takes.
            pipe.rpush(channel._q_for_pri(queue, priority), json.dumps(message))
        restored = True

    client.transaction(move, key)
    return restored
