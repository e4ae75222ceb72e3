"""A github source's build folder (controller.images.buildfolder): what its Makefile includes,
what the cache keeps of it, the test-pass zip that carries it, and the re-run that builds
GitHub's unmodified zip with it (make faked: no cargo, no Docker)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from cluster.cache import Cache
from cluster.errors import ConfigError, InfrastructureError
from cluster.models import ImageInfo
from cluster.tasks import Status
from controller.images import buildfolder
from controller.images.build import Builder, github_rebuild_args, is_github_zip
from controller.images.snapshots import write_entries
from controller.results.finish import finish_pass
from tests.controller.test_finish import case, payload, spec_for

REPO = Path(__file__).resolve().parents[2]
COMMIT = "6348a0be4aeb5b48eecf17a5d0aae15ff8239984"
SNAPSHOT = f"snapshots/{COMMIT}.zip"


def test_makefile_includes_literal_names_only() -> None:
    text = ("ID := x\ninclude ../upstream.mk  # the shared build\n-include local.mk ../a.mk\n"
            "sinclude ../a.mk\ninclude $(CACHE_DIR)/gen.mk\n# include ../commented.mk\n"
            "included: ; echo include ../not-a-directive.mk\n")
    assert buildfolder.makefile_includes(text) == ["../upstream.mk", "local.mk", "../a.mk"]


def _version_folder(tmp_path: Path) -> Path:
    """impl/rust/upstream-head and upstream.mk copied out of the repository, plus what a build
    leaves in the folder (never kept)."""
    folder = tmp_path / "rust" / "upstream-head"
    folder.mkdir(parents=True)
    for name in ("Makefile", "Dockerfile"):
        shutil.copy(REPO / "impl/rust/upstream-head" / name, folder / name)
    shutil.copy(REPO / "impl/rust/upstream.mk", tmp_path / "rust" / "upstream.mk")
    (tmp_path / "rust" / "rust.mk").write_text("# not included by upstream-head\n")
    (folder / "build").mkdir()
    (folder / "build" / "hole-punch-client").write_bytes(b"\x7fELF built")
    (folder / "image.yaml").write_text("imageID: generated\n")
    return folder


def test_the_build_folder_is_the_version_folder_and_its_includes(tmp_path: Path) -> None:
    folder = _version_folder(tmp_path)
    files = buildfolder.build_folder_files(folder)
    assert sorted(files) == ["upstream-head/Dockerfile", "upstream-head/Makefile", "upstream.mk"]
    assert files["upstream.mk"].read_bytes() == (REPO / "impl/rust/upstream.mk").read_bytes()


def test_an_include_out_of_the_language_folder_or_to_nothing_is_bad_input(tmp_path: Path) -> None:
    folder = _version_folder(tmp_path)
    (tmp_path / "secret.mk").write_text("X := 1\n")
    (folder / "Makefile").write_text("include ../../secret.mk\n")
    with pytest.raises(ConfigError, match=r"Makefile: include: '../../secret.mk' leads out of rust/"):
        buildfolder.build_folder_files(folder)
    (folder / "Makefile").write_text("include ../missing.mk\n")
    with pytest.raises(ConfigError, match=r"Makefile: include: '../missing.mk' is not a file"):
        buildfolder.build_folder_files(folder)
    (folder / "Makefile").unlink()
    with pytest.raises(ConfigError, match="must hold its Makefile"):
        buildfolder.build_folder_files(folder)


def test_keep_replaces_the_last_copy_whole(tmp_path: Path) -> None:
    folder = _version_folder(tmp_path)
    cache = tmp_path / "cache"
    kept = buildfolder.keep(cache, "rust-upstream-head", folder)
    assert kept == cache / "github" / "rust-upstream-head"
    (kept / "upstream-head" / "stale").write_text("from an older copy")
    (folder / "Dockerfile").write_text("FROM changed\n")
    buildfolder.keep(cache, "rust-upstream-head", folder)
    assert sorted(buildfolder.kept_files(cache, "rust-upstream-head")) == [
        "upstream-head/Dockerfile", "upstream-head/Makefile", "upstream.mk"]
    assert (kept / "upstream-head" / "Dockerfile").read_text() == "FROM changed\n"
    assert [p.name for p in (cache / "github").iterdir()] == ["rust-upstream-head"]
    assert buildfolder.version_folder(kept) == kept / "upstream-head"
    assert buildfolder.kept_files(cache, "never-built") == {}


def _github_zip(path: Path) -> Path:
    """GitHub's layout: one top folder <repo>-<commit>/, directory entries, no Makefile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"rust-libp2p-{COMMIT}/", "")
        archive.writestr(f"rust-libp2p-{COMMIT}/Cargo.toml", "[workspace]\n")
    return path


def test_a_github_zip_is_told_from_a_snapshot_of_ours(tmp_path: Path) -> None:
    assert is_github_zip(_github_zip(tmp_path / "github.zip"))
    write_entries(tmp_path / "ours.zip", [("Makefile", 0o100644, b"all:\n")])
    assert not is_github_zip(tmp_path / "ours.zip")
    (tmp_path / "not-a-zip.zip").write_bytes(b"nope")
    assert not is_github_zip(tmp_path / "not-a-zip.zip")


def test_the_test_pass_zip_carries_the_kept_build_folder(tmp_path: Path) -> None:
    tests = [case("a", "a")]
    spec = spec_for(tmp_path, tests)
    cache = Path(spec.cache_dir)
    _github_zip(cache / SNAPSHOT)
    buildfolder.keep(cache, "rust-upstream-head", _version_folder(tmp_path))
    buildfolder.keep(cache, "rust-upstream-other", _version_folder(tmp_path / "other"))
    spec.images["rust-upstream-head"] = ImageInfo(
        image_id="d" * 64, image_name="holepunch-rust-upstream-head",
        built_at="2026-12-03T13:00:00Z", arch="x86_64", snapshot=SNAPSHOT)
    summary = finish_pass(spec, [payload(tests[0], Status.PASS)])
    top = "hole-punch-full-101010-25-11-2026/"
    with zipfile.ZipFile(summary.test_pass_zip) as archive:
        names = archive.namelist()
        assert archive.read(f"{top}github/rust-upstream-head/upstream.mk") == \
            (REPO / "impl/rust/upstream.mk").read_bytes()
        assert f"{top}github/rust-upstream-head/upstream-head/Dockerfile" in names
        assert f"{top}github/rust-upstream-head/upstream-head/Makefile" in names
    # only the pass's own github images; a local image's snapshot has none
    assert not [n for n in names if "rust-upstream-other" in n or "/github/a/" in n]


def _rerun_cache(tmp_path: Path, kept: bool = True, packed: bool = True) -> Cache:
    """An unzipped pass's folder (a re-run's cache): GitHub's zip, its crates' pack, the kept
    build folder."""
    cache = Cache(tmp_path / "pass")
    _github_zip(cache.path(SNAPSHOT))
    if packed:
        cache.path(f"snapshots/{COMMIT}.vendor.tar.zst").write_bytes(b"fake pack")
    if kept:
        buildfolder.keep(cache.root, "rust-upstream-head", _version_folder(tmp_path / "checkout"))
    return cache


def _fake_make(calls: list[tuple[Path, list[str]]]):
    def make(folder: Path, args: list[str]) -> None:  # a fake: records, writes image.yaml
        calls.append((folder, args))
        (folder / "image.yaml").write_text(yaml.safe_dump({
            "imageID": "e" * 64, "imageName": "holepunch-rust-upstream-head",
            "builtAt": "2026-12-07T19:00:00Z", "arch": "x86_64", "snapshot": SNAPSHOT}))
    return make


def test_a_rerun_builds_githubs_zip_with_the_kept_makefile_offline(tmp_path: Path) -> None:
    cache = _rerun_cache(tmp_path)
    calls: list[tuple[Path, list[str]]] = []
    said: list[str] = []
    builder = Builder(cache, log=said.append, has_image=lambda image: False)
    builder._make = _fake_make(calls)
    image = builder.rebuild("rust-upstream-head", SNAPSHOT)
    work = cache.root / "build" / "github" / "rust-upstream-head"
    assert calls == [(work / "upstream-head", ["all", f"SNAPSHOT={SNAPSHOT}", "BUILD=offline"])]
    assert github_rebuild_args(SNAPSHOT) == calls[0][1]
    assert (work / "upstream.mk").is_file()  # `include ../upstream.mk` finds it
    assert image.image_id == "e" * 64
    # the kept folder stays as the pass had it (the next zip bundles it again)
    assert not (cache.root / "github" / "rust-upstream-head" / "upstream-head" / "image.yaml").exists()
    assert any("building from snapshots/" in line and "(offline," in line for line in said)


def test_a_rerun_without_the_build_folder_or_the_crates_says_why(tmp_path: Path) -> None:
    builder = Builder(_rerun_cache(tmp_path / "a", kept=False), log=lambda line: None)
    builder._make = _fake_make([])
    with pytest.raises(InfrastructureError, match=r"carries no github/rust-upstream-head/"):
        builder.rebuild("rust-upstream-head", SNAPSHOT)
    builder = Builder(_rerun_cache(tmp_path / "b", packed=False), log=lambda line: None)
    builder._make = _fake_make([])
    with pytest.raises(InfrastructureError, match=rf"no {COMMIT}.vendor.tar.zst beside"):
        builder.rebuild("rust-upstream-head", SNAPSHOT)


def test_a_rerun_builds_a_snapshot_of_ours_from_its_own_makefile(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "pass")
    cache.folder("snapshots")
    write_entries(cache.path("snapshots/ours.zip"), [("Makefile", 0o100644, b"all:\n")])
    calls: list[tuple[Path, list[str]]] = []
    builder = Builder(cache, log=lambda line: None)
    builder._make = _fake_make(calls)
    builder.rebuild("python-v0.8", "snapshots/ours.zip")
    assert calls == [(cache.root / "build" / "src" / "python-v0.8" / "v0.8",
                      ["all", "SNAPSHOT=snapshots/ours.zip"])]


@pytest.mark.parametrize("up_to_date", [False, True], ids=["rebuilt", "up-to-date"])
def test_every_build_of_a_github_source_keeps_its_build_folder(tmp_path: Path,
                                                               up_to_date: bool) -> None:
    from controller.images.build import BuildTarget
    cache = Cache(tmp_path / "cache")
    _github_zip(cache.path(SNAPSHOT))
    folder = _version_folder(tmp_path)
    (folder / "image.yaml").unlink()  # never built
    if up_to_date:  # image.yaml names this snapshot and the engine has the image
        (folder / "image.yaml").write_text(yaml.safe_dump({
            "imageID": "e" * 64, "imageName": "x", "builtAt": "2026-12-07T19:00:00Z",
            "arch": "x86_64", "snapshot": SNAPSHOT}))
    builder = Builder(cache, log=lambda line: None, has_image=lambda image: up_to_date)
    calls: list[tuple[Path, list[str]]] = []
    builder._make = _fake_make(calls)
    built = builder.build(BuildTarget("rust-upstream-head", folder, "github", COMMIT, "offline",
                                      "hole-punching-tests/Dockerfile"))
    assert built.rebuilt is not up_to_date
    assert sorted(buildfolder.kept_files(cache.root, "rust-upstream-head")) == [
        "upstream-head/Dockerfile", "upstream-head/Makefile", "upstream.mk"]
