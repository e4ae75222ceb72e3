"""GitHub's zip of a commit, fetched once into the cache as a github source's snapshot.

The seed's plan downloads `https://github.com/<repo>/archive/<commit>.zip` for a github source;
so does a build whose cache lacks `snapshots/<commit>.zip`. What comes back is checked before it
is kept (a zip, under one top folder `<name>-<commit>/`, as GitHub and `git archive --prefix`
make it) and written under a temporary name first: a cut or wrong download never becomes a
snapshot. A snapshot is named by its commit, so it is fetched once and never again.

Where GitHub cannot be reached (this project's own machines: package registries only) the error
says how to put the zip there by hand. HOLEPUNCH_GITHUB_ARCHIVE replaces the URL's
`https://github.com` part (a mirror; the tests' loopback server).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from cluster.cache import written_beside
from cluster.errors import InfrastructureError

DEFAULT_BASE = "https://github.com"
BASE_ENV = "HOLEPUNCH_GITHUB_ARCHIVE"
TIMEOUT_S = 60.0
LIMIT_BYTES = 1 << 30  # rust-libp2p's zip is under 2 MB; a GiB is no source archive


def archive_url(repo: str, commit: str) -> str:
    base = os.environ.get(BASE_ENV, DEFAULT_BASE).rstrip("/")
    return f"{base}/{repo}/archive/{commit}.zip"


def by_hand(repo: str, commit: str, target: Path) -> str:
    name = repo.rsplit("/", 1)[-1]
    return (f"put the repository's zip for commit {commit} at {target} (in a clone of {repo}: "
            f"git archive --format=zip --prefix={name}-{commit}/ {commit} > {target.name})")


def top_folder_problem(archive: Path, repo: str, commit: str) -> str | None:
    """Why `archive` is not GitHub's zip of `commit`, or None when it looks like one."""
    if not zipfile.is_zipfile(archive):
        return "it is not a zip"
    expected = f"{repo.rsplit('/', 1)[-1]}-{commit}/"
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
    if not names:
        return "it is an empty zip"
    strays = [name for name in names if not name.startswith(expected)]
    if strays:
        return f"its entries are not all under {expected} (e.g. {strays[0]!r})"
    return None


def fetch(repo: str, commit: str, target: Path, timeout: float = TIMEOUT_S) -> None:
    """Download GitHub's zip of `commit` of `repo` to `target`; InfrastructureError if it
    cannot be had, naming the URL, the reason and what to do by hand."""
    url = archive_url(repo, commit)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, \
                written_beside(target) as tmp:
            with tmp.open("wb") as out:
                copied = _copy_bounded(response, out)
            problem = top_folder_problem(tmp, repo, commit)
            if problem:
                raise InfrastructureError(f"{url}: {copied} bytes came back, but {problem}; "
                                          f"{by_hand(repo, commit, target)}")
    except urllib.error.HTTPError as error:
        raise InfrastructureError(f"{url}: HTTP {error.code} {error.reason} (is {commit} a commit "
                                  f"of {repo}?); {by_hand(repo, commit, target)}") from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise InfrastructureError(f"{url}: cannot be downloaded ({reason}); "
                                  f"{by_hand(repo, commit, target)}") from error


def _copy_bounded(source, out) -> int:
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > LIMIT_BYTES:
            raise InfrastructureError(f"more than {LIMIT_BYTES} bytes: not a source archive")
        out.write(chunk)
    return copied

