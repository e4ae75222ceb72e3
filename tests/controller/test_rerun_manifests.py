"""A test-pass zip's manifests are input: a crafted one is refused (exit 2, naming the file and
the key) before a re-run touches the engine or writes a file, never followed out of the folder."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from cluster.cache import Cache, sha256_file
from cluster.errors import EXIT_BAD_INPUT, ConfigError
from cluster.matrix import build_matrix, matrix_to_yaml
from cluster.models import TestCase, Transport
from cluster.selection import Selection
from controller.archive.thin import restore_snapshots, thin_snapshots
from controller.run import rerun as rerun_module
from controller.run.pass_plan import SubmitOptions

MB = 1024 * 1024
IMAGE = {"imageID": "c" * 64, "imageName": "holepunch-x", "builtAt": "2026-11-25T09:00:00Z",
         "arch": "x86_64", "snapshot": f"snapshots/{'b' * 64}.zip",
         "makefile": f"makefiles/{'d' * 64}.makefile"}
SETTINGS = {"testPass": {"name": "hole-punch-full-101010-25-11-2026", "kind": "full"},
            "execution": {"cacheDir": "/c", "timeoutSeconds": 120, "retries": 0}}
TEST = {"name": "a x a (tcp)", "dialer": "a", "listener": "a", "transport": "tcp"}


def write_pass(folder: Path, images=None, settings=None, test=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    case = TestCase(name="a x a (tcp)", dialer="a", listener="a", transport=Transport.TCP)
    matrix = yaml.safe_load(matrix_to_yaml(build_matrix([case], Selection(), "full")))
    matrix["tests"] = [test if test is not None else TEST]
    (folder / "test-matrix.yaml").write_text(yaml.safe_dump(matrix))
    (folder / "images.yaml").write_text(yaml.safe_dump(images if images is not None
                                                       else {"a": IMAGE, "router": IMAGE}))
    (folder / "settings.yaml").write_text(yaml.safe_dump(settings if settings is not None
                                                         else SETTINGS))


def with_(base: dict, path: str, value: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(base))
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    target[last] = value
    return data


BAD_IMAGES = {
    "snapshot climbs": {"a": with_(IMAGE, "snapshot", "../../etc/passwd")},
    "snapshot absolute": {"a": with_(IMAGE, "snapshot", "/etc/passwd")},
    "snapshot in another folder": {"a": with_(IMAGE, "snapshot", "build/src/x.zip")},
    "makefile climbs": {"a": with_(IMAGE, "makefile", "makefiles/../../x")},
    "snapshot NUL": {"a": with_(IMAGE, "snapshot", "snapshots/x\x00.zip")},
    "image id not hex": {"a": with_(IMAGE, "imageID", "sha256:../../x")},
    "image name 1 MB": {"a": with_(IMAGE, "imageName", "n" * MB)},
    "image name newline": {"a": with_(IMAGE, "imageName", "x\ny")},
    "key climbs": {"../a": IMAGE},
    "image a string": {"a": "holepunch-x"},
    "a list": [IMAGE],
}
BAD_SETTINGS = {
    "kind climbs": with_(SETTINGS, "testPass.kind", "../../x"),
    "kind with a slash": with_(SETTINGS, "testPass.kind", "a/b"),
    "kind empty": with_(SETTINGS, "testPass.kind", ""),
    "name 1 MB": with_(SETTINGS, "testPass.name", "n" * MB),
    "name NUL": with_(SETTINGS, "testPass.name", "p\x00"),
    "timeout a string": with_(SETTINGS, "execution.timeoutSeconds", "a lot"),
    "timeout zero": with_(SETTINGS, "execution.timeoutSeconds", 0),
    "timeout a year": with_(SETTINGS, "execution.timeoutSeconds", 365 * 24 * 3600),
    "retries negative": with_(SETTINGS, "execution.retries", -1),
    "retries huge": with_(SETTINGS, "execution.retries", 10 ** 9),
    "retries a bool": with_(SETTINGS, "execution.retries", True),
    "execution missing": {"testPass": SETTINGS["testPass"]},
    "a list": [SETTINGS],
}
BAD_TESTS = {
    "dialer climbs": with_(TEST, "dialer", "../x"),
    "name NUL": with_(TEST, "name", "a x a (tcp)\x00"),
    "name 1 MB": with_(TEST, "name", "n" * MB),
    "snapshot absolute": with_(TEST, "dialerSnapshot", "/etc/passwd"),
    "expected failure a string": with_(TEST, "expectedFailure", "yes"),
    "transport unknown": with_(TEST, "transport", "carrier-pigeon"),
}


@pytest.fixture
def no_engine(monkeypatch):
    def reached(*_args):
        raise AssertionError("the re-run reached the engine with a bad manifest")
    monkeypatch.setattr(rerun_module, "engine_version", reached)


def refused(tmp_path: Path, folder: Path, source: str) -> None:
    before = {p for p in tmp_path.rglob("*")}
    options = SubmitOptions(root=folder, output_dir=folder / "out")
    with pytest.raises(ConfigError) as caught:
        rerun_module.rerun(folder, options, Cache(folder), Console(file=io.StringIO()))
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert caught.value.source == str(folder / source)
    assert {p for p in tmp_path.rglob("*")} == before  # nothing written


@pytest.mark.parametrize("images", BAD_IMAGES.values(), ids=BAD_IMAGES.keys())
def test_a_crafted_images_yaml_is_refused(tmp_path: Path, no_engine, images) -> None:
    write_pass(tmp_path / "pass", images=images)
    refused(tmp_path, tmp_path / "pass", "images.yaml")


@pytest.mark.parametrize("settings", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_a_crafted_settings_yaml_is_refused(tmp_path: Path, no_engine, settings) -> None:
    write_pass(tmp_path / "pass", settings=settings)
    refused(tmp_path, tmp_path / "pass", "settings.yaml")


@pytest.mark.parametrize("test", BAD_TESTS.values(), ids=BAD_TESTS.keys())
def test_a_crafted_test_matrix_is_refused(tmp_path: Path, no_engine, test) -> None:
    write_pass(tmp_path / "pass", test=test)
    refused(tmp_path, tmp_path / "pass", "test-matrix.yaml")


def test_the_good_manifests_reach_the_engine(tmp_path: Path, no_engine) -> None:
    """The fixture itself is valid: only the crafted field stops the re-run."""
    write_pass(tmp_path / "pass")
    with pytest.raises(AssertionError, match="reached the engine"):
        rerun_module.rerun(tmp_path / "pass", SubmitOptions(root=tmp_path), Cache(tmp_path),
                           Console(file=io.StringIO()))


# ---------------------------------------------------------------- thin snapshots' manifests


def thin_pass(tmp_path: Path) -> tuple[Path, Path]:
    """A snapshots/ folder as a test-pass zip holds it: one whole zip, one thin."""
    source = tmp_path / "cache"
    source.mkdir()
    shared = b"shared crate source\n" * 200
    for name, own in (("a" * 64, b"a's own"), ("b" * 64, b"b's own")):
        with zipfile.ZipFile(source / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("vendor/shared.rs", shared)
            archive.writestr("own.txt", own)
    pack = thin_snapshots({f"snapshots/{p.name}": p for p in sorted(source.glob("*.zip"))})
    folder = tmp_path / "pass" / "snapshots"
    folder.mkdir(parents=True)
    for relative, path in pack.whole.items():
        (folder / Path(relative).name).write_bytes(path.read_bytes())
    for relative, data in pack.thin.items():
        (folder / Path(relative).name).write_bytes(data)
    (manifest,) = folder.glob("*.thin.yaml")
    return folder, manifest


def test_a_thin_snapshot_is_restored_from_a_good_manifest(tmp_path: Path) -> None:
    folder, _ = thin_pass(tmp_path)
    assert restore_snapshots(folder) == [f"{'b' * 64}.zip"]
    assert sha256_file(folder / f"{'b' * 64}.zip") == sha256_file(tmp_path / "cache" / f"{'b' * 64}.zip")


BAD_THIN = {
    "snapshot climbs": ("snapshot", "../../escape.zip"),
    "snapshot absolute": ("snapshot", "{tmp}/escape.zip"),
    "snapshot not a zip": ("snapshot", "escape.sh"),
    "source climbs": ("sources", ["../../other.thin.zip"]),
    "source absolute": ("sources", ["/etc/passwd"]),
    "no sources": ("sources", []),
    "entry of no source": ("entries", [["own.txt", 5]]),
    "entry a string": ("entries", ["own.txt"]),
    "entry name 1 MB": ("entries", [["n" * MB, 0]]),
    "entry not in its zip": ("entries", [["not-there.txt", 0]]),
    "sha256 not hex": ("sha256", "x" * 64),
}


@pytest.mark.parametrize("key, value", BAD_THIN.values(), ids=BAD_THIN.keys())
def test_a_crafted_thin_manifest_is_refused_and_nothing_written(tmp_path: Path, key, value) -> None:
    folder, manifest = thin_pass(tmp_path)
    data = yaml.safe_load(manifest.read_text())
    data[key] = value.format(tmp=tmp_path) if isinstance(value, str) else value
    manifest.write_text(yaml.safe_dump(data))
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(ConfigError) as caught:
        restore_snapshots(folder)
    assert caught.value.source == str(manifest) and caught.value.exit_code == EXIT_BAD_INPUT
    assert {p for p in tmp_path.rglob("*")} == before


@pytest.mark.parametrize("key, value", [("kind", "../../x"), ("filter", ["x" * MB]),
                                        ("totalTests", "many")])
def test_a_crafted_matrix_metadata_is_refused(tmp_path: Path, no_engine, key, value) -> None:
    folder = tmp_path / "pass"
    write_pass(folder)
    matrix = yaml.safe_load((folder / "test-matrix.yaml").read_text())
    matrix["metadata"][key] = value
    (folder / "test-matrix.yaml").write_text(yaml.safe_dump(matrix))
    refused(tmp_path, folder, "test-matrix.yaml")
