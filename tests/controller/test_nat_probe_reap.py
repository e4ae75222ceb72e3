"""controller.nat.probe.stale_runs: which leftovers a new probe run removes (fake label sets)."""

from __future__ import annotations

from cluster.labels import probe_labels
from controller.nat.probe import stale_runs


def test_only_this_host_s_runs_whose_process_is_gone():
    labels = [probe_labels("dead", "here", 11), probe_labels("dead", "here", 11),
              probe_labels("alive", "here", 12), probe_labels("elsewhere", "there", 11),
              {"holepunch.probe": "nopid", "holepunch.host": "here"}]
    assert stale_runs(labels, "here", alive=lambda pid: pid == 12) == {"dead"}
    assert stale_runs(labels, "here", alive=lambda pid: True) == set()
