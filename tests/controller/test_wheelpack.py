"""holepunch's dependency wheels travel as one solid pack of stored wheels, and re-run.sh's own
shell step puts them back into wheels/ (real xz, real bash and python3; small crafted wheels)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from controller.archive import wheelpack
from controller.images import xz

RECORD = "demo-1.0.dist-info/RECORD"


def wheel(folder: Path, name: str, body: bytes) -> Path:
    """A small deflated wheel, as PyPI serves them."""
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(f"{name}/__init__.py", (2020, 5, 4, 3, 2, 0)), body)
        script = zipfile.ZipInfo(f"{name}/run.py", (2021, 1, 1, 0, 0, 0))
        script.external_attr = 0o100755 << 16
        archive.writestr(script, b"print('run')\n" * 50)
        archive.writestr(RECORD, f"{name}/__init__.py,sha256=x,{len(body)}\n")
    return path


def entries(data: bytes) -> list[tuple[str, tuple, int, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(i.filename, i.date_time, i.external_attr, archive.read(i)) for i in archive.infolist()]


def test_a_stored_wheel_keeps_every_entry_and_its_metadata(tmp_path: Path) -> None:
    original = wheel(tmp_path, "demo", b"VALUE = 1\n" * 400).read_bytes()
    again = wheelpack.stored(original)
    assert entries(again) == entries(original)
    with zipfile.ZipFile(io.BytesIO(again)) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    assert wheelpack.stored(again) == again
    assert wheelpack.stored(b"not a zip") == b"not a zip"


def test_the_pack_is_made_once_and_rerun_sh_unpacks_it_into_wheels(tmp_path: Path) -> None:
    house = tmp_path / "wheels"
    house.mkdir()
    wheels = [wheel(house, name, f"NAME = {name!r}\n".encode() * 300) for name in ("alpha", "beta")]
    pack = wheelpack.packed(wheels, house / "packs")
    assert pack.name == wheelpack.pack_name(list(reversed(wheels))) and xz.current(pack)
    made = pack.stat().st_mtime_ns
    assert wheelpack.packed(wheels, house / "packs").stat().st_mtime_ns == made  # made once
    with tarfile.open(pack) as tar:
        assert tar.getnames() == ["alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl"]
    # re-run.sh's step, in an unzipped pass with nothing but the pack under wheels/
    folder = tmp_path / "pass"
    (folder / "wheels").mkdir(parents=True)
    (folder / wheelpack.IN_ZIP).write_bytes(pack.read_bytes())
    script = f"set -euo pipefail\ncd {folder}\n{wheelpack.UNPACK_SHELL}\n"
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # a python3, bash, touch: nothing else
    subprocess.run(["bash", "-c", script], check=True, env={"PATH": path})
    for original in wheels:
        unpacked = folder / "wheels" / original.name
        assert entries(unpacked.read_bytes()) == entries(original.read_bytes())
    subprocess.run(["bash", "-c", script], check=True)  # again: nothing to do, no error
    assert (folder / "wheels" / ".unpacked").is_file()


def test_a_new_wheel_makes_a_new_pack(tmp_path: Path) -> None:
    house = tmp_path / "wheels"
    house.mkdir()
    first = [wheel(house, "alpha", b"A = 1\n")]
    second = [*first, wheel(house, "beta", b"B = 2\n")]
    assert wheelpack.packed(first, house / "packs") != wheelpack.packed(second, house / "packs")
