"""Property: whatever YAML reaches a loader, the outcome is success or a clean bad-input error.

Random documents, the repository's real files with keys deleted, retyped or given twice, and
hostile strings in ids, paths, repos, commits and patterns go to every loader: impls.yaml and
test-selection.yaml through `matrix`, results.yaml through `report`, the others directly.
Anything else (a traceback, exit 1, exit 4) fails the property.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError
from cluster.matrix import matrix_from_yaml
from cluster.models import ImageInfo, ImagesFile, Settings
from cluster.yamlio import dump_yaml, load_model, parse_yaml, validate

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
SHA = "b7914e407da34c99fb76dcc300b3d44b9af97fac"

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HOSTILE = ["/etc", "../../..", "..", ".", "", " ", "a\n", "a\tb", "\x00", "\x1b[2J", "\u2028",
           "https://github.com/libp2p/rust-libp2p", "libp2p/rust-libp2p", "libp2p/", "/x",
           "a" * 40, SHA, SHA.upper(), SHA + "\n", "~", "!", "!!", "~rust", "!~rust", "~nope",
           "~~rust", "|", "impl/rust/v0.53", "impl/out", "impl/rust/v0.53/../../..", "C:\\x",
           "rust-v0.53", "x" * 300, "tcp", "null", "- a", "{a: b}", "&a", "*a", "!!str", "%"]
strings = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=20))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), strings)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)), max_leaves=12)


def paths_in(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in a parsed document, the root included."""
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths_in(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths_in(value, (*prefix, index))
    return found


@st.composite
def mutated(draw: Callable, text: str) -> str:
    """`text` after one to three mutations: a key deleted, a value replaced by any YAML value or
    a hostile string, a line given twice (a duplicate key, mostly), or random text."""
    kind = draw(st.sampled_from(["tree", "tree", "tree", "line", "random-document", "random-text"]))
    if kind == "random-text":
        return draw(st.text(max_size=200))
    if kind == "random-document":
        return dump_yaml(draw(values))
    if kind == "line":
        lines = text.splitlines(keepends=True)
        index = draw(st.integers(0, len(lines) - 1))
        return "".join(lines[:index + 1] + lines[index:])
    data = copy.deepcopy(yaml.safe_load(text))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_in(data)))
        if not path:
            data = draw(values)
            continue
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            if draw(st.booleans()):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(st.one_of(values, strings))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or retyped that place
    return dump_yaml(data)


@pytest.fixture
def real_repo(tmp_path: Path) -> Path:
    """The repository's own impls.yaml and selection files, over empty source folders."""
    root = tmp_path / "real"
    for line in (REPO / "impls.yaml").read_text().splitlines():
        if "path: " in line:
            folder = root / line.split("path: ")[1].split(",")[0].strip(" }")
            folder.mkdir(parents=True)
            (folder / "Makefile").write_text("all:\n")
            (folder / "Dockerfile").write_text("FROM scratch\n")
    for name in ("impls.yaml", "test-selection.yaml"):
        shutil.copy(REPO / name, root / name)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "impl" / "out").symlink_to(outside)  # a source path that points out of the checkout
    return root


def matrix_outcome(run_cli, root: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "m.yaml"
    out.unlink(missing_ok=True)
    matrices = run_cli.cache / "test-matrix"
    cached = sorted(matrices.glob("*")) if matrices.is_dir() else []
    code, stdout, stderr = run_cli("matrix", "--root", str(root), "-o", str(out))
    assert code in (EXIT_OK, EXIT_BAD_INPUT), stderr
    assert "Traceback" not in stderr
    if code == EXIT_BAD_INPUT:
        assert name in stderr and stderr.startswith("error: "), stderr
        assert not out.exists() and not stdout
        assert sorted((run_cli.cache / "test-matrix").glob("*")) == cached


@FUZZ
@given(st.data())
def test_impls_yaml_through_matrix(real_repo: Path, run_cli, tmp_path: Path, data) -> None:
    text = data.draw(mutated((REPO / "impls.yaml").read_text()))
    (real_repo / "impls.yaml").write_text(text)
    matrix_outcome(run_cli, real_repo, tmp_path, "impls.yaml")


@settings(FUZZ, max_examples=120)
@given(st.data())
def test_hostile_strings_in_impls_fields(real_repo: Path, run_cli, tmp_path: Path, data) -> None:
    impls = yaml.safe_load((REPO / "impls.yaml").read_text())
    impl = data.draw(st.sampled_from(impls["implementations"]))
    field = data.draw(st.sampled_from(["id", "path", "dockerfile", "repo", "commit", "alias"]))
    value = data.draw(strings)
    if field == "id":
        impl["id"] = value
    elif field in ("path", "dockerfile"):
        impl["source"][field] = value
    elif field == "alias":
        impls["test-aliases"][data.draw(strings)] = data.draw(st.one_of(strings, st.lists(strings)))
    else:
        impl["source"] = {"type": "github", "repo": "libp2p/rust-libp2p", "commit": SHA,
                          field: value}
    (real_repo / "impls.yaml").write_text(dump_yaml(impls))
    matrix_outcome(run_cli, real_repo, tmp_path, "impls.yaml")


@FUZZ
@given(st.data())
def test_test_selection_yaml_through_matrix(real_repo: Path, run_cli, tmp_path: Path,
                                            data) -> None:
    base = (REPO / "test-selection.yaml").read_text()
    text = data.draw(st.one_of(mutated(base), st.builds(
        lambda f, i, k: dump_yaml({"test-filter": f, "test-ignore": i, "known-failures": k}),
        st.lists(strings, max_size=3), st.lists(strings, max_size=3), st.lists(strings, max_size=3))))
    (real_repo / "test-selection.yaml").write_text(text)
    matrix_outcome(run_cli, real_repo, tmp_path, "test-selection.yaml")


@FUZZ
@given(st.data())
def test_results_yaml_through_report(run_cli, tmp_path: Path, data) -> None:
    source = tmp_path / "results.yaml"
    source.write_text(data.draw(mutated((GOLDEN / "results.yaml").read_text())))
    (tmp_path / "results.md").unlink(missing_ok=True)
    code, _, stderr = run_cli("report", str(source))
    assert code in (EXIT_OK, EXIT_BAD_INPUT), stderr
    assert "Traceback" not in stderr
    if code == EXIT_BAD_INPUT:
        assert "results.yaml" in stderr and not (tmp_path / "results.md").exists()


@FUZZ
@given(st.data())
def test_hostile_file_names_in_results_yaml(run_cli, tmp_path: Path, data) -> None:
    results = yaml.safe_load((GOLDEN / "results.yaml").read_text())
    for record in data.draw(st.lists(st.sampled_from(results["tests"]), min_size=1, max_size=3)):
        record[data.draw(st.sampled_from(["logFile", "dockerCompose", "name", "reason", "host"]))] = \
            data.draw(st.one_of(strings, st.sampled_from(["x" * 300, "a\0b", "../" * 20 + "etc/passwd",
                                                           "/dev/zero", "/etc", "logs"])))
    source = tmp_path / "results.yaml"
    source.write_text(dump_yaml(results))
    code, _, stderr = run_cli("report", str(source))
    assert code in (EXIT_OK, EXIT_BAD_INPUT), stderr
    assert "Traceback" not in stderr and "root:x:0:0" not in (tmp_path / "results.html").read_text() \
        if code == EXIT_OK else "results.yaml" in stderr


def sample_matrix() -> str:
    from cluster.matrix import build_matrix, matrix_to_yaml
    from cluster.models import ImplsFile
    from cluster.selection import Selection, select_tests
    impls = load_model(ImplsFile, REPO / "impls.yaml")
    return matrix_to_yaml(build_matrix(select_tests(impls, Selection()).tests[:6], Selection(),
                                       "full", generated_at="2026-01-01T00:00:00Z"))


SETTINGS = """\
testPass: {name: hole-punch-full-090000-01-01-2026, kind: full, triggeredBy: submit}
filters: {testFilter: [], testIgnore: [experimental]}
system: {platform: x86_64, os: Linux, docker: '27.0', dockerCompose: null}
execution: {workerCount: 4, verbose: false, cacheDir: /cache, timeoutSeconds: 120, retries: 1}
git: {repository: null, branch: main, commit: %s, dirtyWorkingTree: false}
""" % SHA  # noqa: UP031 (YAML flow mappings: an f-string would need every brace doubled)
IMAGE = f"imageID: {'a' * 64}\nimageName: holepunch-rust-v0-53\nbuiltAt: 2026-01-01T00:00:00Z\n" \
        f"arch: x86_64\nsnapshot: snapshots/{'b' * 64}.zip\n"
IMAGES = dump_yaml({"rust-v0.53": yaml.safe_load(IMAGE), "base": yaml.safe_load(IMAGE)})

LOADERS = {
    "test-matrix.yaml": (sample_matrix(), lambda text, name: matrix_from_yaml(text, name)),
    "settings.yaml": (SETTINGS, lambda text, name: validate(Settings, parse_yaml(text, name), name)),
    "image.yaml": (IMAGE, lambda text, name: validate(ImageInfo, parse_yaml(text, name), name)),
    "images.yaml": (IMAGES, lambda text, name: validate(ImagesFile, parse_yaml(text, name), name)),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_the_samples_load(name: str) -> None:
    text, load = LOADERS[name]
    load(text, name)


@pytest.mark.parametrize("name", sorted(LOADERS))
@FUZZ
@given(data=st.data())
def test_generated_files_load_or_refuse_cleanly(name: str, data) -> None:
    text, load = LOADERS[name]
    try:
        load(data.draw(mutated(text)), name)
    except ConfigError as exc:
        assert exc.source == name and exc.problem
