"""`holepunch-controller cluster up|down|ps`: the whole cluster of compose.cluster.yml on this machine.

Builds the one image every cluster service runs (cluster/image/Dockerfile on our base image, the
Python packages from the cache's wheelhouse plus a fresh wheel of this checkout), then runs
Debian's docker-compose with the settings the compose file reads from the environment.

Secrets (the broker's password, Flower's user:password) are generated once and kept in a folder
of their own, outside the cache (whose images the cache server publishes), in files only their
owner can read: Redis reads its password from a config file, the other services from an env
file, `submit --broker FILE` from a file. None is ever on a command line, where `ps` shows it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster.cache import Cache, atomic_write
from cluster.errors import InfrastructureError, UsageError

PROJECT = "holepunch-cluster"
IMAGE_TAG = "holepunch-cluster:latest"
COMPOSE_FILE = "compose.cluster.yml"
FLOWER_USER = "holepunch"
SECRETS_ENV = "HOLEPUNCH_CLUSTER_SECRETS"
# The files of the secrets folder: Redis's config, the services' env files (every service's
# broker URL, Flower's basic auth), submit's broker URL, Flower's credentials for the user.
REDIS_CONF, BROKER_ENV, FLOWER_ENV, BROKER_URL_FILE, FLOWER_AUTH_FILE = (
    "redis.conf", "broker.env", "flower.env", "broker-url", "flower-auth")


def secrets_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$HOLEPUNCH_CLUSTER_SECRETS, else $XDG_CONFIG_HOME/holepunch/cluster, else
    ~/.config/holepunch/cluster."""
    env = os.environ if environ is None else environ
    if env.get(SECRETS_ENV):
        return Path(env[SECRETS_ENV]).expanduser()
    config = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "holepunch" / "cluster"


@dataclass(frozen=True)
class ClusterSecrets:
    broker_password: str
    flower_auth: str  # user:password

    def broker_url(self, host: str, port: int) -> str:
        return f"redis://:{self.broker_password}@{host}:{port}/0"


def _private_write(path: Path, text: str) -> None:
    atomic_write(path, text)
    path.chmod(0o600)


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def make_secrets(folder: Path, cache: Cache, broker_port: int, flower_auth: str | None) -> ClusterSecrets:
    """Load the cluster's secrets from `folder`, generating what is missing, and write the
    files each consumer reads. The folder must not be inside the cache."""
    if folder.resolve().is_relative_to(cache.root.resolve()):
        raise UsageError(SECRETS_ENV, f"{folder} is inside the cache {cache.root}, which the "
                                      "cache server publishes: keep the secrets elsewhere")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    if flower_auth is not None and (":" not in flower_auth or any(c in flower_auth for c in "\n\r")):
        raise UsageError("--flower-auth", "must be user:password")
    password = (_read(folder / REDIS_CONF) or "").removeprefix("requirepass ").strip()
    secrets_ = ClusterSecrets(
        broker_password=password or secrets.token_hex(24),
        flower_auth=flower_auth or _read(folder / FLOWER_AUTH_FILE)
        or f"{FLOWER_USER}:{secrets.token_urlsafe(12)}")
    _private_write(folder / REDIS_CONF, f"requirepass {secrets_.broker_password}\n")
    _private_write(folder / BROKER_ENV, f"HOLEPUNCH_BROKER={secrets_.broker_url('broker', 6379)}\n")
    _private_write(folder / FLOWER_ENV, f"FLOWER_BASIC_AUTH={secrets_.flower_auth}\n")
    _private_write(folder / BROKER_URL_FILE, secrets_.broker_url("127.0.0.1", broker_port) + "\n")
    _private_write(folder / FLOWER_AUTH_FILE, secrets_.flower_auth + "\n")
    # Earlier versions kept Flower's credentials in the cache, where the cache server served them.
    (cache.root / "cluster" / FLOWER_AUTH_FILE).unlink(missing_ok=True)
    return secrets_


@dataclass(frozen=True)
class ClusterSettings:
    """What compose.cluster.yml reads from its environment (all ports on 127.0.0.1 only)."""

    root: Path
    cache: Path
    image: str
    secrets: Path
    broker_port: int = 16379
    flower_port: int = 5555
    cache_port: int = 18080
    worker_concurrency: int = 2
    max_test_timeout: int = 120
    visibility_timeout: int | None = None

    def environment(self) -> dict[str, str]:
        env = {
            "HOLEPUNCH_ROOT": str(self.root), "HOLEPUNCH_CACHE": str(self.cache),
            "HOLEPUNCH_CLUSTER_IMAGE": self.image,
            "HOLEPUNCH_BROKER_PORT": str(self.broker_port),
            "HOLEPUNCH_FLOWER_PORT": str(self.flower_port),
            "HOLEPUNCH_CACHE_PORT": str(self.cache_port),
            "HOLEPUNCH_SECRETS": str(self.secrets),
            "HOLEPUNCH_WORKER_CONCURRENCY": str(self.worker_concurrency),
            "HOLEPUNCH_MAX_TEST_TIMEOUT": str(self.max_test_timeout),
            "HOLEPUNCH_VISIBILITY_TIMEOUT": str(self.visibility_timeout or ""),
        }
        return env

    @property
    def broker_url(self) -> str:
        """With the password: for this process only, never printed."""
        return _read(self.secrets / BROKER_URL_FILE) or f"redis://127.0.0.1:{self.broker_port}/0"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"


def build_image(root: Path, cache: Cache, base_image: str, log=print) -> str:
    """Build holepunch-cluster on `base_image`; return its image ID (Docker's layer cache keeps
    the apt step; only a changed wheel rebuilds the layers after it)."""
    wheelhouse = cache.root / "wheels"
    if not any(wheelhouse.glob("*.whl")):
        raise InfrastructureError(f"{wheelhouse} has no wheels: run `bash .ci/setup` (it builds "
                                  "the wheelhouse the cluster image installs from)")
    with tempfile.TemporaryDirectory(prefix="holepunch-cluster-image-") as tmp:
        context = Path(tmp)
        shutil.copytree(root / "cluster" / "image", context, dirs_exist_ok=True)
        wheels = context / "wheels"
        wheels.mkdir()
        for wheel in wheelhouse.glob("*.whl"):
            if not wheel.name.startswith("holepunch-"):
                shutil.copy2(wheel, wheels / wheel.name)
        # The releases CI tested: the wheelhouse may hold newer ones beside them.
        shutil.copy2(root / "constraints.txt", wheels / "constraints.txt")
        # The build backend comes from the wheelhouse too (.ci/setup puts it there): no network.
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
              "--no-deps", "--no-index", "--find-links", str(wheelhouse), "-w", str(wheels),
              str(root)],
             "building the holepunch wheel")
        _normalise_mtimes(context)
        log(f"cluster image: building on {base_image[:19]}")
        iid = context / "iid"
        _run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base_image}", "-t", IMAGE_TAG,
              "--iidfile", str(iid), str(context)], "building the cluster image")
        return iid.read_text().strip()


def compose(settings: ClusterSettings, *args: str, check: bool = True,
            capture: bool = False) -> subprocess.CompletedProcess:
    """docker-compose -p holepunch-cluster -f compose.cluster.yml <args> with the settings."""
    if shutil.which("docker-compose") is None:
        raise InfrastructureError("docker-compose is not installed (apt-get install docker-compose)")
    command = ["docker-compose", "-p", PROJECT, "-f", str(settings.root / COMPOSE_FILE), *args]
    result = subprocess.run(command, env={**os.environ, **settings.environment()},
                            capture_output=capture, text=True, check=False)
    if check and result.returncode != 0:
        detail = (result.stderr or "")[-2000:] if capture else ""
        raise InfrastructureError(f"{' '.join(command[3:])} failed ({result.returncode}) {detail}")
    return result


def _normalise_mtimes(folder: Path) -> None:
    """The holepunch wheel is rebuilt every time; equal bytes should still hit the layer cache."""
    for path in folder.rglob("*"):
        os.utime(path, (0, 0), follow_symlinks=False)


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InfrastructureError(f"{what} failed ({result.returncode}): {result.stderr[-2000:]}")


def save_settings(cache: Cache, settings: ClusterSettings) -> None:
    """`down` and `ps` need the variables `up` used (compose will not parse the file without)."""
    data = {**asdict(settings), "root": str(settings.root), "cache": str(settings.cache),
            "secrets": str(settings.secrets)}
    atomic_write(cache.folder("cluster") / "settings.json", json.dumps(data, indent=2) + "\n")


def load_settings(cache: Cache) -> ClusterSettings:
    path = cache.folder("cluster") / "settings.json"
    if not path.is_file():
        raise UsageError("cluster", f"no cluster was started with this cache ({path} is "
                         "missing): run `holepunch-controller cluster up` first")
    data = json.loads(path.read_text(encoding="utf-8"))
    known = {name for name in ClusterSettings.__dataclass_fields__}
    data = {key: value for key, value in data.items() if key in known}  # older files: flower_auth
    return ClusterSettings(**{**data, "root": Path(data["root"]), "cache": Path(data["cache"]),
                              "secrets": Path(data.get("secrets") or secrets_dir())})


def wait_ready(app, wanted: set[str], timeout: float, log=print) -> None:
    """Every named Celery node answers a ping, or InfrastructureError naming the missing ones."""
    deadline = time.monotonic() + timeout
    answered: set[str] = set()
    while time.monotonic() < deadline:
        try:
            answered = {name for reply in app.control.ping(timeout=1.0) for name in reply}
        except Exception as exc:  # the broker may still be starting  # noqa: BLE001
            log(f"waiting for the broker: {exc}")
            time.sleep(1)
            continue
        if wanted <= answered:
            return
    raise InfrastructureError(f"cluster not ready after {timeout:.0f} s: no answer from "
                              f"{', '.join(sorted(wanted - answered))} (see `holepunch-controller "
                              "cluster compose logs`)")
