"""`check-deps`: is everything a pass needs on this machine, and how to get what is missing."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str
    required: bool = True


def _version(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if out.returncode == 0 and text else None


def _tool(name: str, argv: list[str], fix: str, required: bool = True) -> Check:
    version = _version(argv)
    return Check(name, version is not None, version or "not found", fix, required)


def check_docker_engine() -> Check:
    fix = "apt-get install docker.io && dockerd &  (or start the docker service)"
    try:
        import docker

        client = docker.from_env(timeout=5)
        version = client.version().get("Version", "?")
        client.close()
        return Check("docker engine", True, f"engine {version}", fix)
    except Exception as exc:  # the SDK raises several kinds; all mean "not reachable"
        return Check("docker engine", False, f"not reachable: {exc.__class__.__name__}", fix)


def check_broker(url: str) -> Check:
    from cluster.options import redacted
    fix = "check the URL, or start Redis: apt-get install redis-server"
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        return Check("broker", True, redacted(url), fix)
    except Exception as exc:
        return Check("broker", False, f"{redacted(url)}: {exc}", fix)


def check_nfqueue_headers() -> Check:
    present = Path("/usr/include/libnetfilter_queue/libnetfilter_queue.h").is_file()
    return Check("libnetfilter-queue-dev", present, "present" if present else "not found",
                 "apt-get install libnetfilter-queue-dev  (router delay program)", required=True)


def run_checks(broker: str | None,
               engine_check: Callable[[], Check] = check_docker_engine) -> list[Check]:
    checks = [
        engine_check(),
        _tool("docker-compose", ["docker-compose", "version", "--short"],
              "apt-get install docker-compose  (optional: workers run tests through the engine's "
              "API; it runs a test's compose file by hand and `cluster up`)", required=False),
        _tool("make", ["make", "--version"], "apt-get install make"),
        _tool("git", ["git", "--version"], "apt-get install git"),
        check_broker(broker) if broker else _tool(
            "redis-server", ["redis-server", "--version"],
            "apt-get install redis-server  (or pass --broker redis://host:port)"),
        _tool("debootstrap", ["debootstrap", "--version"], "apt-get install debootstrap"),
        _tool("gcc", ["gcc", "--version"], "apt-get install gcc"),
        check_nfqueue_headers(),
        _tool("cargo", ["cargo", "--version"], "install Rust with rustup (Rust images)"),
        _tool("go", ["go", "version"], "install Go >= 1.22 (Go images)"),
        _tool("npm", ["npm", "--version"], "apt-get install npm (JS images)"),
    ]
    return checks
