"""The host watch's decisions (which host is lost, which messages go back on the queue) and the
"first result wins" rule, on plain values: no Redis, no Celery."""

from __future__ import annotations

import json

from cluster.failover import (
    CLAIM_GRACE_SECONDS,
    QUEUED,
    HostWatch,
    Unacked,
    keep_result,
    task_id_of,
    to_restore,
    unacked,
)


def _watch(**kw) -> HostWatch:
    return HostWatch(dead_after=10, **kw)


def test_a_host_silent_longer_than_dead_after_is_dead_and_one_heard_from_is_not() -> None:
    watch = _watch()
    watch.event({"type": "worker-heartbeat", "hostname": "holepunch@worker-a"}, now=100)
    watch.event({"type": "worker-heartbeat", "hostname": "holepunch@worker-b"}, now=100)
    watch.event({"type": "worker-heartbeat", "hostname": "holepunch@worker-a"}, now=108)
    assert watch.dead(109) == set()
    assert watch.dead(110.5) == {"holepunch@worker-b"}
    assert watch.dead(118.5) == {"holepunch@worker-a", "holepunch@worker-b"}


def test_any_event_of_a_host_counts_as_a_heartbeat_but_a_task_sent_one_names_no_host() -> None:
    watch = _watch()
    watch.event({"type": "task-sent", "hostname": "gen12@controller", "uuid": "t"}, now=0)
    assert watch.last_seen == {} and watch.holders == {}
    watch.event({"type": "task-started", "hostname": "holepunch@worker-b", "uuid": "t"}, now=5)
    assert watch.dead(14) == set() and watch.dead(16) == {"holepunch@worker-b"}


def test_a_host_that_said_goodbye_is_not_dead_its_warm_stop_restores_its_own() -> None:
    watch = _watch()
    watch.event({"type": "worker-heartbeat", "hostname": "h"}, now=0)
    watch.event({"type": "worker-offline", "hostname": "h"}, now=1)
    assert watch.dead(100) == set()
    watch.event({"type": "worker-online", "hostname": "h"}, now=200)  # back again
    assert watch.dead(205) == set() and watch.dead(211) == {"h"}


def test_only_the_messages_a_dead_host_holds_are_restored() -> None:
    watch = _watch()
    for uuid, host in (("t1", "b"), ("t2", "a"), ("t3", "b")):
        watch.event({"type": "task-received", "hostname": host, "uuid": uuid}, now=0)
    watch.event({"type": "task-succeeded", "hostname": "b", "uuid": "t3"}, now=1)  # acked
    entries = [Unacked("tag1", "t1"), Unacked("tag2", "t2"), Unacked("tag3", "t3"),
               Unacked("tag4", None), Unacked("tag5", "unknown")]
    assert to_restore(entries, watch, {"b"}) == [Unacked("tag1", "t1")]
    assert to_restore(entries, watch, set()) == []


def test_a_task_the_events_never_named_is_found_by_its_started_state() -> None:
    watch = _watch()  # a reporter started after the tasks were received
    entries = [Unacked("tag1", "t1"), Unacked("tag2", "t2")]
    chosen = to_restore(entries, watch, {"b"}, started_on={"t1": "b", "t2": "a"})
    assert chosen == [Unacked("tag1", "t1")]


def test_a_restored_message_is_never_taken_from_the_host_that_reruns_it() -> None:
    """Between the restore and the re-run host's task-received event, the stored STARTED state
    still names the dead host: the next sweep must leave the message alone."""
    watch = _watch()
    watch.event({"type": "task-started", "hostname": "b", "uuid": "t1"}, now=0)
    watch.restored("t1")
    assert watch.holder("t1", started_on="b") == QUEUED
    assert to_restore([Unacked("new-tag", "t1")], watch, {"b"}, started_on={"t1": "b"}) == []
    watch.event({"type": "task-received", "hostname": "a", "uuid": "t1"}, now=11)
    assert watch.holder("t1") == "a"


def test_a_late_release_by_the_lost_host_does_not_forget_the_rerun_holder() -> None:
    watch = _watch()
    watch.event({"type": "task-started", "hostname": "b", "uuid": "t1"}, now=0)
    watch.restored("t1")
    watch.event({"type": "task-started", "hostname": "a", "uuid": "t1"}, now=12)
    watch.event({"type": "task-succeeded", "hostname": "b", "uuid": "t1"}, now=30)  # healed
    assert watch.holder("t1") == "a"


def test_only_the_tests_move_never_an_aggregate_the_busy_reporter_holds() -> None:
    watch = _watch()
    watch.event({"type": "task-started", "hostname": "reporter@c", "uuid": "agg"}, now=0)
    watch.event({"type": "task-started", "hostname": "reporter@c", "uuid": "t1"}, now=0)
    entries = [Unacked("tag1", "agg", "holepunch.aggregate"), Unacked("tag2", "t1", "holepunch.run_test")]
    chosen = to_restore(entries, watch, {"reporter@c"}, tasks=frozenset({"holepunch.run_test"}))
    assert chosen == [Unacked("tag2", "t1", "holepunch.run_test")]


def test_the_task_id_of_an_unacked_entry() -> None:
    entry = json.dumps([{"headers": {"id": "abc", "task": "holepunch.run_test"},
                         "properties": {"delivery_tag": "x"}}, "holepunch.tests", "holepunch.tests"])
    assert task_id_of(entry) == "abc"
    assert task_id_of(entry.encode()) == "abc"
    assert unacked(b"x", entry) == Unacked("x", "abc", "holepunch.run_test")
    for junk in ("not json", "[]", "{}", json.dumps([{"headers": {}}]),
                 json.dumps([{"headers": {"id": 5}}])):
        assert task_id_of(junk) is None


def test_the_first_result_wins() -> None:
    assert keep_result(claimed=True, stored=False, claim_age=None)
    assert not keep_result(claimed=False, stored=True, claim_age=10_000)  # late: dropped
    assert not keep_result(claimed=False, stored=False, claim_age=1)  # the winner is storing it
    # The winner died between its claim and storing its result: a later result counts.
    assert keep_result(claimed=False, stored=False, claim_age=CLAIM_GRACE_SECONDS + 1)
    assert not keep_result(claimed=False, stored=False, claim_age=None)
