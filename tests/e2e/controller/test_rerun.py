"""A test pass re-run offline from its zip alone, and `submit --kind auto --update-readme`.

One real pass on the embedded default, submitted from a throwaway git checkout whose last commit
touches impl/python/ only: `--kind auto` must pick python, and the chord's aggregate must write
the README dashboard. Its test-pass zip is then unzipped into a temp folder, the pass's client
image is removed from the engine, and `re-run.sh` runs with every package registry pointed at a
loopback sink that counts connections: the image is rebuilt from the bundled snapshot, the same
tests pass, and nothing was fetched. The removed image is loaded back afterwards (same ID, same
tags), so the rest of the suite finds what it expects.

Real Docker engine, real Redis, real Celery worker and reporter, real py-libp2p images.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
import yaml

from controller.results.report import DASHBOARD_END, DASHBOARD_START
from tests.e2e.controller.test_submit import (
    CONTROLLER,
    REPO,
    embedded_redis_running,
    engine_or_skip,
    leftovers,
)

LANG = "python"
IMPL = "python-v0.8"
ONLY = f"{IMPL} x {IMPL} (tcp, noise, yamux"  # the cheapest client to rebuild: no compiler, wheels only
# py-libp2p's TCP punch sometimes loses its simultaneous-connect race: a failure then a pass is
# recorded as flaky (not as pass), and the re-run inherits the pass's retries
RETRIES = "2"
PASSED = ("pass", "flaky")


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def image_id_of(ref: str) -> str | None:
    found = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return found.stdout.strip().removeprefix("sha256:") if found.returncode == 0 else None


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


def checkout_copy(target: Path) -> Path:
    """The repository's source files (what git does not ignore) and its built image.yaml files,
    in a fresh git repository whose last commit touches impl/<LANG>/ only."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    names = [n for n in listed.decode().split("\0") if n]
    names += [str(p.relative_to(REPO)) for p in REPO.glob("**/image.yaml")
              if not {"vendor", "node_modules", ".venv"} & set(p.relative_to(REPO).parts)]
    for name in names:
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    # this copy's python pass: the one cheap test (the root selection still selects everything)
    (target / "impl" / LANG / "test-selection.yaml").write_text(
        f"test-filter:\n  - '{ONLY}'\ntest-ignore: []\n")
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "the checkout")
    (target / "impl" / LANG / "NOTES.md").write_text("a change under impl/python/ only\n")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "touch impl/python only")
    return target


class Sink:
    """A loopback TCP port standing in for every package registry: counts connections, serves
    nothing. Nothing in an offline re-run should ever connect to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items()
               if not k.upper().startswith(("PIP_", "HOLEPUNCH_", "NPM_CONFIG_", "NO_PROXY"))}
        env.update({
            "HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url,
            "GOPROXY": url, "CARGO_HTTP_PROXY": f"127.0.0.1:{self.port}",
            "npm_config_registry": f"{url}/", "npm_config_proxy": url, "npm_config_https_proxy": url,
            "PIP_INDEX_URL": f"{url}/simple", "MIRROR": f"{url}/debian",
        })
        return env

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def auto_pass(tmp_path_factory):
    engine_or_skip()
    root = checkout_copy(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("auto-pass")
    run = subprocess.run([CONTROLLER, "submit", "--root", str(root), "--kind", "auto",
                          "-o", str(out), "--update-readme", str(root / "README.md"),
                          "--retries", RETRIES],
                         capture_output=True, text=True, timeout=900, cwd=root)
    return root, out, run


def test_kind_auto_selects_the_changed_language_only(auto_pass) -> None:
    root, out, run = auto_pass
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"--kind auto: {LANG} (change in impl/{LANG}/**)" in run.stderr
    results = yaml.safe_load((out / "results.yaml").read_text())
    assert results["metadata"]["kind"] == LANG
    assert results["metadata"]["testPass"].startswith(f"hole-punch-{LANG}-")
    names = [t["name"] for t in results["tests"]]
    assert names and all(name.startswith(ONLY) for name in names), names
    assert all(t["status"] in PASSED for t in results["tests"]), results["tests"]
    # the root selection of the same checkout selects far more: only the diff narrowed it
    full = subprocess.run([CONTROLLER, "matrix", "--root", str(root), "--kind", "full",
                           "-o", str(out / "full-matrix.yaml")], capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    assert any(not line.startswith(IMPL) for line in full.stdout.splitlines())


def test_update_readme_through_the_aggregate(auto_pass) -> None:
    root, out, run = auto_pass
    assert run.returncode == 0, run.stderr[-4000:]
    readme = (root / "README.md").read_text()
    dashboard = readme[readme.index(DASHBOARD_START):readme.index(DASHBOARD_END)]
    results = yaml.safe_load((out / "results.yaml").read_text())
    assert f"**Test Pass**: {results['metadata']['testPass']}" in dashboard
    assert f"| **{IMPL}** | 🟢" in dashboard or f"| **{IMPL}** | 🟡" in dashboard
    assert "No pass has been recorded here yet" not in dashboard
    before = (REPO / "README.md").read_text().split(DASHBOARD_START)[0]
    after = readme.split(DASHBOARD_START)[0]
    assert before == after  # only the dashboard changed


def _client_ids(folder: Path) -> dict[str, str]:
    images = yaml.safe_load((folder / "images.yaml").read_text())
    matrix = yaml.safe_load((folder / "test-matrix.yaml").read_text())
    clients = {n for t in matrix["tests"] for n in (t["dialer"], t["listener"])}
    return {key: images[key]["imageID"] for key in clients}


def _tags(image_id: str) -> list[str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .RepoTags}}", image_id).stdout)


def test_rerun_sh_rebuilds_offline_and_passes_again(auto_pass, tmp_path: Path) -> None:
    root, out, run = auto_pass
    assert run.returncode == 0, run.stderr[-4000:]
    zip_path = next(line.removeprefix("test pass: ").strip() for line in run.stderr.splitlines()
                    if line.startswith("test pass: "))
    subprocess.run(["unzip", "-q", zip_path, "-d", str(tmp_path)], check=True)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    clients = _client_ids(folder)
    assert set(clients) == {IMPL}
    # the zip carries the code that ran the pass, and the base rootfs compressed, once
    (wheel,) = folder.glob("wheels/holepunch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("controller/run/rerun.py") == (REPO / "controller/run/rerun.py").read_bytes()
    assert len(list(folder.glob("rootfs/*.tar.xz"))) == 1 and not list(folder.glob("rootfs/*.tar"))
    original = yaml.safe_load((out / "results.yaml").read_text())

    saved = tmp_path / "saved-images.tar"
    removed = {key: (image_id, _tags(image_id)) for key, image_id in clients.items()}
    tag_before = {f"holepunch-{key}:latest": image_id_of(f"holepunch-{key}:latest") for key in clients}
    docker("save", "-o", str(saved), *clients.values())
    sink = Sink()
    try:
        for image_id in clients.values():
            docker("rmi", "-f", image_id)
            assert image_id_of(image_id) is None
        rerun = subprocess.run(["bash", str(folder / "re-run.sh")], capture_output=True, text=True,
                               timeout=1500, cwd=tmp_path, env=sink.env())
        rebuilt = {key: image_id_of(f"holepunch-{key}:latest") for key in clients}
    finally:
        sink.close()
        docker("load", "-q", "-i", str(saved))
        for image_id, tags in removed.values():
            for tag in tags:
                docker("tag", image_id, tag)
        for tag, image_id in tag_before.items():
            if image_id:
                docker("tag", image_id, tag)
        for image_id in rebuilt.values() if "rebuilt" in locals() else []:
            if image_id and image_id not in clients.values() and not _tags(image_id):
                docker("rmi", image_id, check=False)
        saved.unlink(missing_ok=True)

    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-6000:]
    assert sink.connections == 0, "the offline re-run connected to a package registry"
    assert "base: unpacked rootfs/" in rerun.stderr
    for key in clients:
        assert f"{key}: building from snapshots/" in rerun.stderr
        assert rebuilt[key] and rebuilt[key] != clients[key]  # really rebuilt, then tagged
    assert "## Transport: tcp" in rerun.stderr and "# Hole Punch Interoperability" in rerun.stderr
    (new_out,) = folder.glob("rerun-*")
    again = yaml.safe_load((new_out / "results.yaml").read_text())
    assert again["metadata"]["testPass"] != original["metadata"]["testPass"]
    assert not again["metadata"]["partial"]
    assert sorted(t["name"] for t in again["tests"]) == sorted(t["name"] for t in original["tests"])
    assert all(t["status"] in PASSED for t in again["tests"]), again["tests"]
    assert yaml.safe_load((folder / "settings.yaml").read_text())["execution"]["retries"] == 2
    for test in again["tests"]:
        assert test["dialer"]["imageID"] == rebuilt[test["dialer"]["version"]]
    assert (new_out / "results.md").read_text().startswith("# Hole Punch Interoperability")
    assert not leftovers() and not embedded_redis_running()
    # the restored images are back under their IDs for the rest of the suite
    assert all(image_id_of(image_id) for image_id in clients.values())
    shutil.rmtree(folder, ignore_errors=True)
