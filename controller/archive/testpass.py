"""The test-pass snapshot: one zip holding a pass's results and everything needed to re-run it.

hole-punch-<kind>-<HHMMSS>-<DD>-<MM>-<YYYY>.zip
  report.yaml results.md results.html test-matrix.yaml output.log settings.yaml re-run.sh
  captures/            the evidence results.yaml names (a flaky test's failed attempt's too)
  snapshots/ makefiles/ docker-compose/ logs/   (the seed's layout; a snapshot is stored as
                       one xz stream, <name>.tar.xz (controller.images.solid), or as its
                       difference from another of its family, <name>.delta.zst
                       (controller.images.delta); a zip we did not write (a github source) as it
                       is, or thin when it shares entries with another (controller.archive.thin);
                       re-run.sh writes every <name>.zip back before it builds; a github
                       source built offline has <commit>.vendor.tar.zst beside its zip, its
                       vendored crates, which impl/rust/upstream.mk unpacks)
  github/<id>/         what builds a github source's zip, which has no Makefile of ours: its
                       version folder and the files its Makefile includes
                       (controller.images.buildfolder)
  rootfs/ base/        the base image's rootfs tarball and its Makefile
  images.yaml          which snapshot built which image (router, relay, implementations); an
                       image's snapshot names its vendored-crate pack too (<commit>.vendor.tar.zst)
  wheels/              the holepunch package that ran the pass (controller.archive.selfwheel) and its
                       Python dependencies, for an offline install, these as one solid pack,
                       dependencies.tar.xz (controller.archive.wheelpack), unpacked by re-run.sh

Archives that are already compressed (zips, .zst, .xz) are stored as they are, not compressed again.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path

from cluster.cache import Cache
from controller.archive.wheelpack import UNPACK_SHELL

ALREADY_COMPRESSED = (".zip", ".zst", ".gz", ".whl", ".xz")


def pass_name(kind: str, when: datetime) -> str:
    return f"hole-punch-{kind}-{when:%H%M%S-%d-%m-%Y}"


def rerun_script(name: str) -> str:
    return f"""#!/usr/bin/env bash
# Re-run test pass {name} from this folder alone, with no network: rebuild every image from the
# bundled snapshots (base rootfs, router, relay, implementations; GitHub's zip of a commit with
# the Makefile in github/<id>/ and its vendored crates), run the same tests on this
# machine (local Redis, local worker, local Docker engine) and print a new results.md.
# Needs: docker (engine running), make, gcc, python3 (>= 3.11) with venv,
# redis-server, zstd, and the toolchains of the implementations (cargo, go, node/npm).
set -euo pipefail
here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
cd "$here"
for cmd in docker make python3 redis-server; do
  command -v "$cmd" >/dev/null 2>&1 || {{ echo "re-run.sh: $cmd is required" >&2; exit 3; }}
done
{UNPACK_SHELL}
if [ ! -x .venv/bin/holepunch-controller ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --no-index --find-links wheels holepunch
fi
exec .venv/bin/holepunch-controller --cache-dir "$here" rerun "$here" "$@"
"""


def _add(archive: zipfile.ZipFile, source: Path, name: str) -> None:
    method = zipfile.ZIP_STORED if source.name.endswith(ALREADY_COMPRESSED) else zipfile.ZIP_DEFLATED
    archive.write(source, name, compress_type=method)


def write_test_pass(cache: Cache, name: str, texts: dict[str, str | bytes],
                    files: dict[str, Path]) -> Path:
    """Write `test-passes/<name>.zip`: `texts` (or bytes) by their names, `files` copied from disk.

    All entries sit under `<name>/` so that unzipping makes one folder. Written to a temporary
    name and renamed: an interrupted snapshot never looks complete.
    """
    target = cache.folder("test-passes") / f"{name}.zip"
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for relative, text in sorted(texts.items()):
                info = zipfile.ZipInfo(f"{name}/{relative}", date_time=datetime.now().timetuple()[:6])
                info.external_attr = (0o100755 if relative.endswith(".sh") else 0o100644) << 16
                info.compress_type = (zipfile.ZIP_STORED if relative.endswith(ALREADY_COMPRESSED)
                                      else zipfile.ZIP_DEFLATED)
                archive.writestr(info, text)
            for relative, source in sorted(files.items()):
                _add(archive, source, f"{name}/{relative}")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target

