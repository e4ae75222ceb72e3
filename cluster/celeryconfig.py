"""Every Celery setting in one place, and why each has the value it has."""

from __future__ import annotations

import os
from typing import Any

BROKER_ENV = "HOLEPUNCH_BROKER"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
TEST_QUEUE = "holepunch.tests"
DEFAULT_TEST_TIMEOUT = 120
# A test expected to fail (known-failures) gets this long at most: a passing test here takes
# 5-15 s, and the known failures took a median of 38 s (up to 98 s) before they gave up on
# their own, 72 % of a full pass's test-seconds. One that starts passing still passes within it.
DEFAULT_KNOWN_FAILURE_TIMEOUT = 20
# A task is more than its test: an image fetch, compose up and down. The visibility timeout must
# cover all of it, or kombu's Redis transport re-queues a running task and starts a duplicate.
TASK_OVERHEAD_SECONDS = 240
RESTORE_SWEEP_SECONDS = 5
# Workers send a heartbeat event this often (Celery's default). The reporter's host watch
# (cluster/failover.py) takes a host silent for DEAD_AFTER_SECONDS as lost and puts the tests it
# held back on the queue, checking every HOST_WATCH_SWEEP_SECONDS: a lost host's tests start
# again elsewhere about DEAD_AFTER + SWEEP seconds after its last heartbeat, whatever the
# visibility timeout. Five missed heartbeats: a host slowed down by a busy machine is not lost.
HEARTBEAT_SECONDS = 2.0
DEAD_AFTER_SECONDS = 10.0
HOST_WATCH_SWEEP_SECONDS = 1.0


# The aggregate of a pass runs on the controller's own queue, never on a test host, so outputs
# land where the controller is even if `submit` was detached.
CONTROLLER_QUEUE = "holepunch.controller"


def visibility_timeout(max_test_timeout: int, override: int | None = None) -> int:
    """Just above the longest a run_test task can take: shorter starts duplicates of running
    tests. It is only the safety net now: the reporter's host watch restores a lost host's
    messages within seconds (DEAD_AFTER_SECONDS), so the visibility timeout matters only while
    no reporter runs, and needs no tuning. Every consumer of one broker (workers, reporter) must
    use the same value: the smallest one re-queues for all."""
    return override or max_test_timeout + TASK_OVERHEAD_SECONDS


def celery_settings(broker: str | None = None, max_test_timeout: int = DEFAULT_TEST_TIMEOUT,
                    visibility: int | None = None) -> dict[str, Any]:
    broker = broker or os.environ.get(BROKER_ENV) or DEFAULT_BROKER
    transport = {"visibility_timeout": visibility_timeout(max_test_timeout, visibility),
                 # kombu sweeps for expired unacked messages every interval x throttle seconds
                 # (10 x 10 by default): a dead host's tests would wait up to 100 s more.
                 "unacked_restore_interval": RESTORE_SWEEP_SECONDS,
                 "unacked_restore_throttle": 1}
    return {
        "broker_url": broker,
        "result_backend": broker,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": TEST_QUEUE,
        # A test's record is acknowledged only once written; a worker that dies mid-test
        # (SIGKILL, host lost) leaves its message unacked, so another host runs the test.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,  # a host takes only the tests it can start now
        # A redelivered test whose success is already stored is not run again.
        "worker_deduplicate_successful_tasks": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Flower: started state, events, and the arguments (the test name comes first).
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "result_extended": True,
        "result_expires": 7 * 24 * 3600,
    }
