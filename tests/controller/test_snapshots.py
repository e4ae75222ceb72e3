"""Snapshots unpack as one consistent tree: contents, modes, links, and one modification time;
a version folder's links to its language's shared source are stored as the files themselves."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from controller.images.snapshots import extract_zip, snapshot_entries, write_entries, write_zip
from controller.images.sources import source_digest

REPO = Path(__file__).resolve().parents[2]


def test_unpacked_files_share_one_time_so_make_sees_nothing_newer(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "node_modules").mkdir(parents=True)
    # make's view of an npm folder: the install stamp is made from package.json, which sorts
    # after node_modules/ in the zip and so would be unpacked after it
    (source / "node_modules" / ".package-lock.json").write_text("{}")
    (source / "package.json").write_text("{}")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    os.symlink("run.sh", source / "link")
    (source / "Makefile").write_text("node_modules/.package-lock.json: package.json\n"
                                     "\t@echo stale\n")
    archive = tmp_path / "snap.zip"
    write_zip(source, archive)
    target = tmp_path / "out"
    extract_zip(archive, target)
    files = [p for p in target.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len({p.stat().st_mtime_ns for p in files}) == 1
    assert os.access(target / "run.sh", os.X_OK) and os.readlink(target / "link") == "run.sh"
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    stale = subprocess.run(["make", "-q", "-C", str(target), "node_modules/.package-lock.json"],
                           capture_output=True, check=False)
    assert stale.returncode == 0  # up to date: nothing to re-make


def _language(tmp_path: Path) -> Path:
    """A language folder as impl/<lang>/ has it: a shared client and build, and two version
    folders that link them (`src -> ../src`, `lang.mk -> ../lang.mk`)."""
    lang = tmp_path / "impl" / "lang"
    (lang / "src").mkdir(parents=True)
    (lang / "src" / "main.rs").write_text("fn main() {}\n")
    (lang / "lang.mk").write_text("all:\n\t@echo $(VERSION)\n")
    for version in ("v1", "v2"):
        folder = lang / version
        folder.mkdir()
        (folder / "Makefile").write_text(f"VERSION := {version}\ninclude lang.mk\n")
        (folder / "Cargo.toml").write_text(f'version = "{version}"\n')
        os.symlink("../src", folder / "src")
        os.symlink("../lang.mk", folder / "lang.mk")
        os.symlink("Cargo.toml", folder / "manifest")  # a link inside stays a link
    return lang


def test_a_change_to_the_shared_source_changes_every_versions_digest(tmp_path: Path) -> None:
    lang = _language(tmp_path)
    before = {v: source_digest(lang / v) for v in ("v1", "v2")}
    assert before["v1"] != before["v2"]  # each version's own files still count
    (lang / "src" / "main.rs").write_text("fn main() { println!(); }\n")
    after_source = {v: source_digest(lang / v) for v in ("v1", "v2")}
    (lang / "lang.mk").write_text("all:\n\t@echo version $(VERSION)\n")
    after_build = {v: source_digest(lang / v) for v in ("v1", "v2")}
    for version in ("v1", "v2"):
        assert len({before[version], after_source[version], after_build[version]}) == 3


def test_the_snapshot_holds_the_shared_files_and_builds_in_a_folder_named_otherwise(
        tmp_path: Path) -> None:
    lang = _language(tmp_path)
    archive = tmp_path / "v1.zip"
    write_zip(lang / "v1", archive)
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        assert zipped.read("src/main.rs") == b"fn main() {}\n"
        assert zipped.read("lang.mk") == (lang / "lang.mk").read_bytes()
    assert {"Makefile", "Cargo.toml", "src/main.rs", "lang.mk", "manifest"} == names
    target = tmp_path / "elsewhere" / "unpacked"
    extract_zip(archive, target)
    assert not (target / "src").is_symlink() and not (target / "lang.mk").is_symlink()
    assert os.readlink(target / "manifest") == "Cargo.toml"
    # the same identity whether the shared files are links or copies
    assert source_digest(target) == source_digest(lang / "v1")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.rmtree(lang)  # nothing outside the snapshot is left to reach
    made = subprocess.run(["make", "-s", "-C", str(target)], capture_output=True, text=True,
                          check=False)
    assert made.returncode == 0 and made.stdout.strip() == "v1", made.stderr


def test_a_link_out_to_nothing_names_the_link(tmp_path: Path) -> None:
    lang = _language(tmp_path)
    (lang / "lang.mk").unlink()
    with pytest.raises(ConfigError) as err:
        source_digest(lang / "v1")
    assert err.value.source == str(lang / "v1" / "lang.mk") and err.value.key == "symlink"


@pytest.mark.parametrize("folder, shared", [
    ("impl/go/v0.51", {"main.go": "impl/go/src/main.go", "redis.go": "impl/go/src/redis.go",
                       "go.mk": "impl/go/go.mk", ".dockerignore": "impl/go/.dockerignore"}),
    ("impl/go/v0.48", {"main.go": "impl/go/src/main.go", "go.mk": "impl/go/go.mk"}),
    ("impl/rust/v0.57", {"src/main.rs": "impl/rust/src/main.rs",
                         "src/redis.rs": "impl/rust/src/redis.rs", "rust.mk": "impl/rust/rust.mk",
                         ".dockerignore": "impl/rust/.dockerignore"}),
    ("impl/rust/v0.52", {"src/main.rs": "impl/rust/src/main.rs", "rust.mk": "impl/rust/rust.mk"}),
])
def test_each_client_version_snapshots_its_languages_one_source(folder: str, shared: dict[str, str],
                                                                tmp_path: Path) -> None:
    root = REPO / folder
    archive = tmp_path / "snapshot.zip"
    write_zip(root, archive, stubs={"vendor": {}})  # vendored dependencies left out here
    with zipfile.ZipFile(archive) as zipped:
        for name, origin in shared.items():
            mode = zipped.getinfo(name).external_attr >> 16
            assert stat.S_ISREG(mode), f"{name} is stored as a link"
            assert zipped.read(name) == (REPO / origin).read_bytes()
        own = {"go.mod", "go.sum"} if "/go/" in folder else {"Cargo.toml", "Cargo.lock"}
        assert own | {"Makefile"} <= set(zipped.namelist())


def test_the_flat_makefile_a_build_records_stands_alone(tmp_path: Path) -> None:
    """image.yaml's makefile: the version's Makefile with the language's .mk in place of its
    include line, made from an unpacked snapshot of the real go-v0.51 folder."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    archive = tmp_path / "go.zip"
    write_entries(archive, ((p.relative_to(REPO / "impl/go/v0.51").as_posix(), 0o100644,
                             p.read_bytes())
                            for p in snapshot_entries(REPO / "impl/go/v0.51", frozenset({"vendor"}))))
    target = tmp_path / "unpacked-elsewhere"
    extract_zip(archive, target)
    made = subprocess.run(["make", "-s", "-C", str(target), "build/Makefile.flat"],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    flat = (target / "build" / "Makefile.flat").read_text()
    assert "IMPL_ID := go-v0.51\n" in flat and "\ninclude go.mk\n" not in flat
    assert (REPO / "impl/go/go.mk").read_text() in flat


def test_a_link_out_of_the_language_folder_is_kept_as_a_link_not_followed(tmp_path: Path) -> None:
    """Only the language folder is shared: a link to anything else (a hostile one to /etc)
    counts by where it points and is stored as a link, so no file outside is read."""
    lang = _language(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not for a snapshot\n")
    os.symlink(str(outside), lang / "v1" / "elsewhere")
    before = source_digest(lang / "v1")
    (outside / "secret").write_text("changed\n")
    assert source_digest(lang / "v1") == before
    archive = tmp_path / "v1.zip"
    write_zip(lang / "v1", archive)
    with zipfile.ZipFile(archive) as zipped:
        assert stat.S_ISLNK(zipped.getinfo("elsewhere").external_attr >> 16)
        assert not any(name.startswith("elsewhere/") for name in zipped.namelist())
