"""A lost host's tests go back on the queue within seconds, and the first result of a test wins.

Pure logic, no Redis, no Celery: the reporter's host watch (controller/run/hostwatch.py) feeds
it the workers' heartbeats and task events and asks which unacknowledged messages to restore;
the worker's `run_test` asks whether its result is the first one for its task.

Why: with the Redis broker a consumer's unacknowledged message comes back by itself only after
the visibility timeout, which must exceed the longest task, so every lost host used to cost the
longest test's time. Workers send a heartbeat event every HEARTBEAT_SECONDS; a host silent for
DEAD_AFTER_SECONDS (killed, paused, cut off) is dead, and the messages it holds are restored at
once, whatever the visibility timeout.

A "dead" host may come back (a partition heals) and finish its test after all. Its result and
the re-run's are two results of one task. The restore marks the task as lost on that host (in
the same transaction: the lost delivery's tag; the re-run gets a new one), and the lost run
never records a result nor re-queues the test: the re-run's result is the one that counts,
whenever each finishes (even when the re-run lands on the same host, restarted). Any
other two results of one task (a race between an ack and a restore): the first to claim the
task's record wins, the other is dropped without a record (and without counting twice towards
the pass's chord).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cluster.celeryconfig import DEAD_AFTER_SECONDS

# Events that say a host has a task's message (it was delivered to it, or it runs it).
HOLDING_EVENTS = frozenset({"task-received", "task-started"})
# Events after which the host no longer holds the message (it acks or rejects it).
RELEASING_EVENTS = frozenset({"task-succeeded", "task-failed", "task-retried", "task-rejected",
                              "task-revoked"})
# Sent by whoever publishes a task (submit): not a worker host, never holds a message.
SENDER_EVENTS = frozenset({"task-sent"})
QUEUED = ""  # the holder of a restored message until a host reports it received it


@dataclass
class HostWatch:
    """What the reporter knows of the worker hosts: when each was last heard from (monotonic
    seconds of the reporter) and which host holds which task's message."""

    dead_after: float = DEAD_AFTER_SECONDS
    last_seen: dict[str, float] = field(default_factory=dict)
    holders: dict[str, str] = field(default_factory=dict)  # task id -> host (QUEUED: restored)
    offline: set[str] = field(default_factory=set)  # said goodbye (a warm stop restores its own)

    def event(self, event: dict[str, Any], now: float) -> None:
        """One Celery event, as the event receiver hands it over."""
        host = event.get("hostname")
        kind = event.get("type", "")
        if not isinstance(host, str) or not host or kind in SENDER_EVENTS:
            return
        if kind == "worker-offline":
            self.offline.add(host)
            self.last_seen.pop(host, None)
            return
        self.offline.discard(host)
        self.last_seen[host] = now
        task_id = event.get("uuid")
        if not isinstance(task_id, str):
            return
        if kind in HOLDING_EVENTS:
            self.holders[task_id] = host
        elif kind in RELEASING_EVENTS and self.holders.get(task_id) == host:
            del self.holders[task_id]

    def dead(self, now: float) -> set[str]:
        """Hosts heard from once and silent for longer than `dead_after` since."""
        return {host for host, seen in self.last_seen.items() if now - seen > self.dead_after}

    def silent_for(self, host: str, now: float) -> float:
        return now - self.last_seen.get(host, now)

    def holder(self, task_id: str, started_on: str | None = None) -> str | None:
        """Who holds the task's message: from the events, else the host its stored STARTED
        state names (a reporter started after the task was received), else unknown."""
        return self.holders.get(task_id, started_on)

    def restored(self, task_id: str) -> None:
        """The message is back on the queue: no host holds it until one reports receiving it
        (so a later sweep never takes it from the host that runs the re-run)."""
        self.holders[task_id] = QUEUED


@dataclass(frozen=True)
class Unacked:
    """One entry of kombu's unacked hash: the delivery tag, the task ID and the task's name."""

    tag: str
    task_id: str | None
    task: str | None = None


def task_id_of(entry: bytes | str) -> str | None:
    """The task ID in an unacked entry (JSON: [message, exchange, routing key]); None if the
    entry is not a Celery task message."""
    return unacked(b"", entry).task_id


def unacked(tag: bytes | str, entry: bytes | str) -> Unacked:
    """An entry of the unacked hash, read (the IDs None where it is not a Celery task message)."""
    tag = tag.decode() if isinstance(tag, bytes) else tag
    try:
        headers = json.loads(entry)[0]["headers"]
        task_id, task = headers.get("id"), headers.get("task")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return Unacked(tag, None)
    return Unacked(tag, task_id if isinstance(task_id, str) else None,
                   task if isinstance(task, str) else None)


def to_restore(entries: list[Unacked], watch: HostWatch, dead: set[str],
               started_on: dict[str, str] | None = None,
               tasks: frozenset[str] | None = None) -> list[Unacked]:
    """The entries held by a dead host. `started_on`: task id -> host, from stored STARTED
    states, for tasks the events never named a holder of. `tasks`: only messages of these task
    names move (the tests: never a pass's aggregate, which the reporter, busy with one and
    silent meanwhile, holds itself)."""
    started_on = started_on or {}
    return [entry for entry in entries if entry.task_id is not None
            and (tasks is None or entry.task in tasks)
            and watch.holder(entry.task_id, started_on.get(entry.task_id)) in dead]


# --- the first result wins ------------------------------------------------------------------

FIRST_RESULT_KEY = "holepunch:first-result:{}"
LOST_KEY = "holepunch:lost-delivery:{}"  # the delivery tag of a message taken from a lost host
# A claim whose task has no stored result this long after it was made: its winner died between
# claiming and storing (a second at most in practice), so a later result may take over.
CLAIM_GRACE_SECONDS = 60


def keep_result(claimed: bool, stored: bool, claim_age: float | None) -> bool:
    """Whether a finished run of a task records its result.

    `claimed`: this run's claim on the task's record succeeded (it is the first to finish).
    `stored`: the task already has a stored successful result.
    `claim_age`: seconds since the existing claim was made (None: unknown).
    """
    if claimed:
        return True
    if stored:
        return False
    return claim_age is not None and claim_age > CLAIM_GRACE_SECONDS
