"""Hostile configuration: each refused with the file, the key and what was expected."""

from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.matrix import matrix_from_yaml
from cluster.models import ImageInfo, ImplsFile, Results, SelectionFile, Settings
from cluster.yamlio import load_model, parse_yaml, read_yaml

GOOD = "implementations:\n  - id: a\n    source: {type: local}\n    transports: [tcp]\n"
SHA = "0123456789abcdef0123456789abcdef01234567"


def github(repo: str = "libp2p/rust-libp2p", commit: str = SHA) -> str:
    return GOOD.replace("{type: local}", f"{{type: github, repo: {repo!r}, commit: {commit!r}}}")


def refused(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "impls.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_model(ImplsFile, path)
    assert caught.value.source == str(path)
    return caught.value


# ------------------------------------------------------------------ duplicate keys


@pytest.mark.parametrize("text, line, key", [
    ("implementations: []\ntest-aliases: {}\nimplementations: []\n", 3, "implementations"),
    (GOOD + "    transports: [quic]\n", 5, "transports"),
    ("implementations:\n  - id: a\n    source: {type: local, path: x, path: y}\n"
     "    transports: [tcp]\n", 3, "path"),
    ("test-aliases: {a: x, b: y, a: z}\n" + GOOD, 1, "a"),
])
def test_a_key_given_twice_names_its_line_and_key(tmp_path: Path, text: str, line: int,
                                                   key: str) -> None:
    error = refused(tmp_path, text)
    assert error.key.startswith(f"line {line},")
    assert f"duplicate key {key!r}" in error.problem


def test_every_reader_refuses_duplicate_keys(tmp_path: Path) -> None:
    twice = "metadata: {}\nmetadata: {}\n"
    path = tmp_path / "results.yaml"
    path.write_text(twice)
    for load in (lambda: read_yaml(path), lambda: load_model(Results, path),
                 lambda: load_model(Settings, path), lambda: load_model(ImageInfo, path),
                 lambda: load_model(SelectionFile, path),
                 lambda: matrix_from_yaml(twice, "test-matrix.yaml")):
        with pytest.raises(ConfigError, match="duplicate key 'metadata'"):
            load()


def test_merge_keys_still_override() -> None:
    data = parse_yaml("base: &b {type: local, path: x}\nsource:\n  <<: *b\n  path: y\n", "f")
    assert data["source"] == {"type": "local", "path": "y"}


@pytest.mark.parametrize("text", ["when: 2025-13-45\n", "a: " + "[" * 3000, "a: !!int 'x'\n",
                                  "? [1]\n: 2\n", "a: !!python/name:os.system ''\n", "\0"])
def test_values_python_cannot_hold_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="malformed YAML"):
        parse_yaml(text, "x.yaml")


# ------------------------------------------------------------------ ids, repos, commits


@pytest.mark.parametrize("bad", ["a\n", "a\t", "a b", " a", "a\x00", "a\x1b[31m", "\u2028a",
                                 "-a", "a/b", "../a", ""])
def test_ids_admit_no_whitespace_or_control_characters(tmp_path: Path, bad: str) -> None:
    error = refused(tmp_path, GOOD.replace("id: a", f"id: {bad!r}".replace("'", '"')))
    assert error.key == "implementations[0].id" and "letters, digits" in error.problem


@pytest.mark.parametrize("bad", [
    "https://github.com/libp2p/rust-libp2p", "github.com/libp2p/rust-libp2p", "libp2p",
    "libp2p/rust-libp2p/", "libp2p/rust libp2p", "libp2p/rust-libp2p\n", "-libp2p/x",
    "libp2p-/x", "lib--p2p/x", "a" * 40 + "/x", "libp2p/" + "x" * 101, "libp2p/..", "libp2p/.",
    "git@github.com:libp2p/x", "libp2p/x?ref=main", "libp2p/\x00"])
def test_repo_is_owner_slash_name(tmp_path: Path, bad: str) -> None:
    error = refused(tmp_path, github(repo=bad))
    assert error.key == "implementations[0].source.repo" and "<owner>/<name>" in error.problem


@pytest.mark.parametrize("good", ["libp2p/rust-libp2p", "a/b", "A1-b2/x.y_z", "a" * 39 + "/x"])
def test_good_repos_load(tmp_path: Path, good: str) -> None:
    path = tmp_path / "impls.yaml"
    path.write_text(github(repo=good))
    assert load_model(ImplsFile, path).implementations[0].source.repo == good


@pytest.mark.parametrize("bad", [SHA + "\n", SHA.upper(), SHA[:-1], SHA + "0", " " + SHA[1:],
                                 "g" * 40, "HEAD", "main"])
def test_commit_is_40_lowercase_hex(tmp_path: Path, bad: str) -> None:
    error = refused(tmp_path, github(commit=bad))
    assert error.key == "implementations[0].source.commit" and "40-hex" in error.problem


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize("field, bad", [
    ("path", "/etc"), ("path", "../../.."), ("path", "impl/../.."), ("path", "impl/./x"),
    ("path", "impl//x"), ("path", "impl/x\n"), ("path", "impl/x y"), ("path", ""),
    ("path", "C:\\x"), ("path", "~/x"), ("dockerfile", "../Dockerfile"),
    ("dockerfile", "/etc/passwd"), ("dockerfile", "a/../../b"), ("dockerfile", "Docker\tfile"),
])
def test_paths_are_relative_without_climbing(tmp_path: Path, field: str, bad: str) -> None:
    error = refused(tmp_path, GOOD.replace("{type: local}",
                                           f'{{type: local, {field}: "{bad}"}}'.replace("\\", "\\\\")
                                           .replace("\n", "\\n").replace("\t", "\\t")))
    assert error.key == f"implementations[0].source.{field}"
    assert "expected a relative path inside" in error.problem


@pytest.mark.parametrize("bad", ["a\nb", "x\x00", "\x1b[2J"])
def test_patterns_admit_no_control_characters(bad: str) -> None:
    from cluster.yamlio import validate
    with pytest.raises(ConfigError, match=r"test-ignore\[1\]: a control character"):
        validate(SelectionFile, {"test-ignore": ["ok", bad]}, "s.yaml")
