"""config -> selection -> test matrix, with the matrix cached under the hash of its inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cluster.cache import Cache, atomic_write
from cluster.errors import ConfigError
from cluster.matrix import build_matrix, matrix_cache_key, matrix_from_yaml, matrix_to_yaml
from cluster.models import ImplsFile, TestMatrix
from cluster.selection import Selection, resolve_selection, select_tests
from controller.images.sources import snapshot_name
from controller.plan.config import RepoConfig, load_config


@dataclass(frozen=True)
class Plan:
    matrix: TestMatrix
    selection: Selection
    cache_key: str
    cache_path: Path
    from_cache: bool
    impls: ImplsFile    # the configuration it was planned from: the pass builds from it too


def selection_for(config: RepoConfig, cli_filter: str | None, cli_ignore: str | None,
                  cli_nat: str | None = None, cli_relay: str | None = None) -> Selection:
    return resolve_selection(config.defaults, cli_filter, cli_ignore,
                             extra_known_failures=config.global_defaults.known_failures,
                             cli_nat=cli_nat, cli_relay=cli_relay)


def plan_matrix(root: Path, kind: str, cli_filter: str | None, cli_ignore: str | None,
                cache: Cache, cli_nat: str | None = None, cli_relay: str | None = None) -> Plan:
    """Select the tests for `kind`; reuse the cached matrix when no input changed."""
    config = load_config(root, kind)
    selection = selection_for(config, cli_filter, cli_ignore, cli_nat, cli_relay)
    snapshots = {impl.id: snapshot_name(impl, root) for impl in config.impls.implementations}
    key = matrix_cache_key([
        ("impls", json.dumps(config.impls.model_dump(mode="json"), sort_keys=True).encode()),
        ("kind", kind.encode()),
        ("selection", json.dumps([selection.filter, selection.ignore,
                                  selection.known_failures]).encode()),
        ("dimensions", json.dumps([selection.dialer_nats, selection.listener_nats,
                                   [r.value for r in selection.relays]]).encode()),
        ("snapshots", json.dumps(snapshots, sort_keys=True).encode()),
    ])
    cache_path = cache.keyed("test-matrix", key, ".yaml")
    if cache_path.is_file():
        matrix = matrix_from_yaml(cache_path.read_text(encoding="utf-8"), str(cache_path))
        return Plan(matrix, selection, key, cache_path, from_cache=True, impls=config.impls)

    selected = select_tests(config.impls, selection, snapshots, source=str(config.defaults_path))
    if not selected.tests:
        raise ConfigError(config.defaults_path, "test-filter",
                          f"the selection matches no test (filter: {list(selection.filter)}, "
                          f"ignore: {list(selection.ignore)}); nothing to run")
    matrix = build_matrix(selected.tests, selection, kind, ignored=selected.ignored)
    atomic_write(cache_path, matrix_to_yaml(matrix))
    return Plan(matrix, selection, key, cache_path, from_cache=False, impls=config.impls)
