"""Every bad input is a ConfigError that names the file and the key."""

from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.models import ImageInfo, ImplsFile, SelectionFile
from cluster.yamlio import load_model, parse_yaml, validate


def load_impls(tmp_path: Path, text: str) -> ImplsFile:
    path = tmp_path / "impls.yaml"
    path.write_text(text)
    return load_model(ImplsFile, path)


GOOD = "implementations:\n  - id: a\n    source: {type: local}\n    transports: [tcp]\n"


@pytest.mark.parametrize("text, key, words", [
    ("implementations: [", "line", "malformed YAML"),
    ("", None, "empty"),
    ("implementations: 3\n", "implementations", "list"),
    ("implementations:\n  - source: {type: local}\n    transports: [tcp]\n",
     "implementations[0].id", "required key is missing"),
    (GOOD.replace("[tcp]", "[tcp, udp]"), "implementations[0].transports[1]", "'tcp' or 'quic'"),
    (GOOD.replace("[tcp]", "tcp"), "implementations[0].transports", "list"),
    (GOOD + GOOD.split("\n", 1)[1], "implementations", "duplicate implementation id 'a'"),
    (GOOD.replace("id: a", "id: 'a b'"), "implementations[0].id", "letters, digits"),
    (GOOD.replace("type: local", "type: gitlab"), "implementations[0].source.type", "'local'"),
    (GOOD.replace("type: local", "type: github, repo: x/y, commit: abc"),
     "implementations[0].source", "40-hex"),
    (GOOD.replace("transports", "transport"), "implementations[0].transport", "unknown key"),
    (GOOD + "test-aliases: {x: 3}\n", "test-aliases.x", "string"),
    (GOOD + "    contract: test-plans\n", "implementations[0].contract", "'holepunch' or 'upstream'"),
    (GOOD.replace("type: local", "type: local, build: offline"), "implementations[0].source",
     "build: is for github sources"),
    (GOOD.replace("type: local", "type: github, repo: x/y, commit: " + "a" * 40 + ", build: cargo"),
     "implementations[0].source.build", "'dockerfile' or 'offline'"),
])
def test_bad_impls(tmp_path: Path, text: str, key: str | None, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_impls(tmp_path, text)
    error = caught.value
    assert error.source == str(tmp_path / "impls.yaml")
    if key:
        assert error.key.startswith(key)
    assert words in str(error)


def test_malformed_yaml_names_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml("a: [1,\nb: }", "x.yaml")
    assert caught.value.key.startswith("line 2, column")


def test_good_impls_defaults(tmp_path: Path) -> None:
    impl = load_impls(tmp_path, GOOD).implementations[0]
    assert impl.folder == "impl/a/a"
    assert impl.source.dockerfile == "Dockerfile"
    assert impl.secure_channels == [] and impl.muxers == []


def test_contract_defaults_to_ours_and_marks_upstream_sides(tmp_path: Path) -> None:
    from cluster.models import Contract
    from cluster.selection import all_test_cases
    impls = load_impls(tmp_path, GOOD + GOOD.split("\n", 1)[1].replace("id: a", "id: b")
                       + "    contract: upstream\n")
    assert [i.contract for i in impls.implementations] == [Contract.HOLEPUNCH, Contract.UPSTREAM]
    marks = {c.name: (c.dialer_contract, c.listener_contract) for c in all_test_cases(impls)}
    assert marks == {"a x a (tcp)": (None, None), "a x b (tcp)": (None, Contract.UPSTREAM),
                     "b x a (tcp)": (Contract.UPSTREAM, None),
                     "b x b (tcp)": (Contract.UPSTREAM, Contract.UPSTREAM)}


def test_selection_file_accepts_empty_lists_and_rejects_numbers() -> None:
    empty = validate(SelectionFile, {"test-filter": None, "test-ignore": []}, "s.yaml")
    assert empty.test_filter == [] and empty.known_failures == []
    with pytest.raises(ConfigError, match=r"test-ignore\[0\]"):
        validate(SelectionFile, {"test-ignore": [1.0]}, "s.yaml")
    with pytest.raises(ConfigError, match="unknown key"):
        validate(SelectionFile, {"test_filter": []}, "s.yaml")


def test_image_yaml_strips_prefix_and_checks_length() -> None:
    data = {"imageID": "sha256:" + "a" * 64, "imageName": "x", "builtAt": "t", "arch": "x86_64"}
    assert validate(ImageInfo, data, "image.yaml").image_id == "a" * 64
    with pytest.raises(ConfigError, match="imageID"):
        validate(ImageInfo, {**data, "imageID": "abc"}, "image.yaml")


def test_unquoted_timestamps_keep_the_seed_text() -> None:
    from cluster.yamlio import parse_yaml
    data = parse_yaml("imageID: " + "b" * 64 + "\nimageName: x\nbuiltAt: 2025-11-08T12:34:56Z\n"
                      "arch: x86_64\n", "image.yaml")
    assert validate(ImageInfo, data, "image.yaml").built_at == "2025-11-08T12:34:56Z"
