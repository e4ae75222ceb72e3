"""A github source's snapshot is fetched once as GitHub's zip of its commit, checked before it is
kept. GitHub itself is never reached here: a loopback HTTP server (tests/conftest.py's
`fake_github`) stands in for it through HOLEPUNCH_GITHUB_ARCHIVE."""

from __future__ import annotations

import io
import socket
import zipfile
from pathlib import Path

import pytest

from cluster.errors import InfrastructureError
from controller.images import github_archive

REPO = "example/seeded"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def github_zip(top: str = f"seeded-{COMMIT}/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{top}Dockerfile", "FROM scratch\n")
    return buffer.getvalue()


def test_the_commits_zip_is_fetched_to_its_snapshot_name(tmp_path: Path, fake_github) -> None:
    fake_github.routes[f"/{REPO}/archive/{COMMIT}.zip"] = github_zip()
    target = tmp_path / "snapshots" / f"{COMMIT}.zip"
    github_archive.fetch(REPO, COMMIT, target)
    assert target.read_bytes() == github_zip()
    assert fake_github.requests == [f"/{REPO}/archive/{COMMIT}.zip"]
    assert github_archive.archive_url(REPO, COMMIT).endswith(f"/{REPO}/archive/{COMMIT}.zip")


@pytest.mark.parametrize(("body", "said"), [
    (b"<html>rate limited</html>", "it is not a zip"),
    (github_zip(top="other-folder/"), f"not all under seeded-{COMMIT}/"),
])
def test_a_wrong_download_is_never_kept(tmp_path: Path, fake_github, body: bytes, said: str) -> None:
    fake_github.routes[f"/{REPO}/archive/{COMMIT}.zip"] = body
    target = tmp_path / "snapshots" / f"{COMMIT}.zip"
    with pytest.raises(InfrastructureError, match=said) as caught:
        github_archive.fetch(REPO, COMMIT, target)
    assert "git archive --format=zip" in str(caught.value)
    assert list(target.parent.iterdir()) == []  # no snapshot, no temporary file


def test_a_commit_github_does_not_have_is_named(tmp_path: Path, fake_github) -> None:
    target = tmp_path / f"{COMMIT}.zip"
    with pytest.raises(InfrastructureError, match=f"HTTP 404 .*is {COMMIT} a commit of {REPO}"):
        github_archive.fetch(REPO, COMMIT, target)
    assert not target.exists()


def test_no_route_to_github_says_what_to_put_where(tmp_path: Path, monkeypatch) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(github_archive.BASE_ENV, f"http://127.0.0.1:{port}")
    target = tmp_path / f"{COMMIT}.zip"
    with pytest.raises(InfrastructureError, match="cannot be downloaded") as caught:
        github_archive.fetch(REPO, COMMIT, target, timeout=5)
    assert f"put the repository's zip for commit {COMMIT} at {target}" in str(caught.value)
    assert not target.exists()
