"""The pure parts of a re-run: which images to rebuild, the pass's own options, the wheel of the
running code, and the compressed base rootfs."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import pytest

from cluster.errors import InfrastructureError
from cluster.models import ImageInfo, Settings
from controller.archive.selfwheel import build_wheel, package_files
from controller.images import rootfs
from controller.run.pass_plan import SubmitOptions
from controller.run.rerun import plan_rerun, recorded_options


def image(char: str, snapshot: str | None) -> ImageInfo:
    return ImageInfo.model_validate({"imageID": char * 64, "imageName": f"holepunch-{char}",
                                     "builtAt": "2026-11-25T09:00:00Z", "arch": "x86_64",
                                     "snapshot": snapshot, "makefile": None})


def test_present_images_are_reused_missing_ones_rebuilt_and_base_left_to_its_makefile() -> None:
    recorded = {"base": image("a", "rootfs/x.tar"), "router": image("b", "snapshots/r.zip"),
                "go-v0.51": image("c", "snapshots/g.zip")}
    plan = plan_rerun(recorded, has_image=lambda image_id: image_id == "b" * 64)
    assert plan.reuse == {"router": recorded["router"]}
    assert plan.rebuild == {"go-v0.51": "snapshots/g.zip"}


def test_a_missing_image_without_a_snapshot_cannot_be_rerun() -> None:
    with pytest.raises(InfrastructureError, match="go-v0.51 names no snapshot"):
        plan_rerun({"go-v0.51": image("c", None)}, has_image=lambda _: False)


def test_a_rerun_keeps_the_passes_retries_and_longer_timeout() -> None:
    options = SubmitOptions(root=Path("."))
    settings = Settings.model_validate({"testPass": {"name": "p", "kind": "full"}, "execution": {
        "retries": 2, "timeoutSeconds": 300, "cacheDir": "/c"}})
    again = recorded_options(options, settings)
    assert (again.retries, again.timeout) == (2, 300)
    assert recorded_options(SubmitOptions(root=Path("."), retries=1, timeout=400), settings).retries == 1
    assert recorded_options(options, None) == options


def test_the_wheel_holds_the_files_with_a_matching_record() -> None:
    files = {"controller/__init__.py": b"", "controller/x.py": b"X = 1\n"}
    name, data = build_wheel("holepunch", "0.1.0", "Metadata-Version: 2.1\nName: holepunch\n",
                             "[console_scripts]\nholepunch-controller = controller.cli:main\n",
                             files)
    assert name == "holepunch-0.1.0-py3-none-any.whl"
    assert build_wheel("holepunch", "0.1.0", "M", "E", files)[1] == \
        build_wheel("holepunch", "0.1.0", "M", "E", dict(reversed(files.items())))[1]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.read("controller/x.py") == b"X = 1\n"
        record = archive.read("holepunch-0.1.0.dist-info/RECORD").decode().splitlines()
        names = set(archive.namelist())
    assert {line.split(",")[0] for line in record} == names
    assert "holepunch-0.1.0.dist-info/RECORD,," in record


def test_the_running_packages_are_found_with_their_sources() -> None:
    files = package_files()
    assert {"cluster/models.py", "controller/run/rerun.py", "worker/tasks.py"} <= set(files)
    here = Path(__file__).resolve().parents[2]
    assert files["controller/run/rerun.py"] == (here / "controller" / "run" / "rerun.py").read_bytes()


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd is not installed")
def test_rootfs_compressed_once_and_unpacked_to_its_checked_name(tmp_path: Path) -> None:
    data = b"a rootfs tarball stands in here\n" * 1000
    tarball = tmp_path / f"{hashlib.sha256(data).hexdigest()}.tar"
    tarball.write_bytes(data)
    packed = rootfs.compressed(tarball)
    assert packed.name == tarball.name + ".xz" and packed.stat().st_size < len(data)
    mtime = packed.stat().st_mtime_ns
    assert rootfs.compressed(tarball).stat().st_mtime_ns == mtime  # made once
    assert rootfs.unpack(tarball) is False  # the tarball is there already
    tarball.unlink()
    assert rootfs.unpack(tarball) is True and tarball.read_bytes() == data
    wrong = tmp_path / f"{'0' * 64}.tar"
    shutil.copyfile(packed, wrong.with_name(wrong.name + ".xz"))
    with pytest.raises(InfrastructureError, match="not its name"):
        rootfs.unpack(wrong)
    assert not wrong.exists() and [p.name for p in tmp_path.glob(".*")] == []


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd is not installed")
def test_the_zip_stores_the_rootfs_compressed_and_the_running_code(tmp_path: Path) -> None:
    from cluster.models import Status
    from controller.results.finish import finish_pass
    from tests.controller.test_finish import case, payload, spec_for

    test = case("go-v0.51", "go-v0.51")
    spec = spec_for(tmp_path, [test])
    cache = Path(spec.cache_dir)
    data = b"rootfs\n" * 1000
    sha = hashlib.sha256(data).hexdigest()
    (cache / "rootfs").mkdir()
    (cache / "rootfs" / f"{sha}.tar").write_bytes(data)
    (cache / "rootfs" / "bookworm-minbase.sha256").write_text(sha + "\n")
    (cache / "wheels").mkdir()
    (cache / "wheels" / "holepunch-0.1.0-py3-none-any.whl").write_bytes(b"a stale wheel")
    (cache / "wheels" / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"a dependency")
    base = image("d", f"rootfs/{sha}.tar")
    spec = spec.model_copy(update={"images": {**spec.images, "base": base}})
    summary = finish_pass(spec, [payload(test, Status.PASS)])
    with zipfile.ZipFile(summary.test_pass_zip) as archive:
        names = {n.split("/", 1)[1]: archive.getinfo(n) for n in archive.namelist()}
        wheel = archive.read(f"{spec.name}/wheels/holepunch-0.1.0-py3-none-any.whl")
    assert f"rootfs/{sha}.tar.xz" in names and f"rootfs/{sha}.tar" not in names
    assert names[f"rootfs/{sha}.tar.xz"].compress_type == zipfile.ZIP_STORED
    assert "rootfs/bookworm-minbase.sha256" in names and "wheels/dependencies.tar.xz" in names
    assert not [name for name in names if name.startswith("wheels/six")]  # inside the pack
    assert wheel != b"a stale wheel"
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        assert "controller/results/finish.py" in archive.namelist()
    assert summary.test_pass_zip_bytes == Path(summary.test_pass_zip).stat().st_size


def test_a_rerun_keeps_the_passes_known_failure_timeout_or_its_absence() -> None:
    def settings(execution: dict) -> Settings:
        return Settings.model_validate({"testPass": {"name": "p", "kind": "full"},
                                        "execution": {"cacheDir": "/c", **execution}})
    options = SubmitOptions(root=Path("."), known_failure_timeout=20)
    assert recorded_options(options, settings({"knownFailureTimeoutSeconds": 45})) \
        .known_failure_timeout == 45
    # A pass from before there was one ran its known failures under --timeout: so does its re-run.
    assert recorded_options(options, settings({})).known_failure_timeout is None
