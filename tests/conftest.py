"""Shared fixtures: a throwaway repository laid out like ours, a CLI runner, and a real Redis.

The end-to-end tests (everything that starts containers) live under tests/e2e/<area>/, whose
conftest marks them `e2e`; the rest run without Docker: `pytest -m "not e2e and not browser"`.
"""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import main
from tests.redis_server import redis_server

IMPLS = """\
implementations:
  - id: rust-v0.53
    source: {type: local, path: impl/rust/v0.53}
    transports: [tcp, quic]
  - id: rust-v0.54
    source: {type: local, path: impl/rust/v0.54}
    transports: [tcp, quic]
  - id: go-v0.43
    source: {type: local, path: impl/go/v0.43}
    transports: [tcp, quic]
"""

RUST_SELECTION = """\
test-filter:
  - rust-v0.53
  - rust-v0.54
test-ignore:
  - rust-v0.53 x rust-v0.54  # Skip tests between v0.53 and v0.54
  - rust-v0.53 x rust-v0.53 (tcp)  # Skip rust self-tests on TCP
"""

GLOBAL_SELECTION = """\
test-filter: []  # Empty = select all tests
test-ignore:
  - experimental  # Skip tests marked experimental
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for folder in ("impl/rust/v0.53", "impl/rust/v0.54", "impl/go/v0.43"):
        (root / folder).mkdir(parents=True)
        (root / folder / "Makefile").write_text(f"# {folder}\n")
    (root / "impls.yaml").write_text(IMPLS)
    (root / "test-selection.yaml").write_text(GLOBAL_SELECTION)
    (root / "impl/rust/test-selection.yaml").write_text(RUST_SELECTION)
    (root / "impl/go/test-selection.yaml").write_text("test-filter: [go-v]\n")
    return root


@pytest.fixture
def git_repo(repo: Path) -> Path:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    git("init", "-q", "-b", "main")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    return repo


@pytest.fixture
def run_cli(tmp_path: Path, capsys):
    """Run holepunch-controller in-process; returns (exit code, stdout, stderr)."""
    cache = tmp_path / "cache"

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--cache-dir", str(cache), *args])
        out, err = capsys.readouterr()
        return code, out, err
    run.cache = cache
    return run


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory):
    """A real Redis on loopback, for this session only (skips without redis-server)."""
    with redis_server(tmp_path_factory.mktemp("broker")) as url:
        yield url


class FakeGitHub(http.server.BaseHTTPRequestHandler):
    """Serves `routes` (path -> bytes); anything else is a 404. Counts requests."""

    routes: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        FakeGitHub.requests.append(self.path)
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_github(monkeypatch) -> Iterator[type[FakeGitHub]]:
    """A loopback server standing in for GitHub's archive downloads
    (controller.images.github_archive reads HOLEPUNCH_GITHUB_ARCHIVE)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    FakeGitHub.routes, FakeGitHub.requests = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HOLEPUNCH_GITHUB_ARCHIVE", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield FakeGitHub
    finally:
        server.shutdown()
        server.server_close()
