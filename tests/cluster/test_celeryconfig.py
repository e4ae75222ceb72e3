"""The Celery settings that decide what happens to a test when its host dies."""

from __future__ import annotations

from cluster.celeryconfig import TASK_OVERHEAD_SECONDS, celery_settings, visibility_timeout


def test_visibility_covers_the_longest_test_plus_its_overhead() -> None:
    assert visibility_timeout(120) == 120 + TASK_OVERHEAD_SECONDS
    assert visibility_timeout(120, 90) == 90  # an explicit value wins (cluster up --visibility-timeout)


def test_a_dead_hosts_tests_are_swept_back_promptly() -> None:
    settings = celery_settings("redis://127.0.0.1:1/0", 60, 90)
    transport = settings["broker_transport_options"]
    assert transport["visibility_timeout"] == 90
    # every 5 s a real scan (kombu's default is a scan every 10 x 10 s)
    assert transport["unacked_restore_interval"] * transport["unacked_restore_throttle"] <= 10
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"]
    assert settings["worker_prefetch_multiplier"] == 1
