"""End-to-end harness: one hole-punch test at a time, run by the worker's own code.

`worker.services` brings up the simulated internet, Redis, the relay and the host guard;
`worker.runner.execute` runs one compose project and tears it down. The harness adds what a
test needs to look at: the dialer's stderr, timings, and anything left behind.
"""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker
import yaml
from docker.errors import ImageNotFound

from cluster.imageid import image_ref
from worker.host import Host
from worker.runner import execute, spec_for
from worker.services import Services
from worker.warmrouters import WarmRouters

REPO = Path(__file__).resolve().parents[3]
E2E_HOST = "e2e"
DEFAULT_TIMEOUT_S = 120.0


# ---------------------------------------------------------------------------------------------
# images


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.name))


def image_yaml_id(folder: Path) -> str | None:
    """The imageID an image.yaml names, if the file exists."""
    path = folder / "image.yaml"
    if not path.is_file():
        return None
    image_id = (yaml.safe_load(path.read_text()) or {}).get("imageID")
    return str(image_id) if image_id else None


def present_image(client: docker.DockerClient, ref: str | None) -> str | None:
    """The image ID (64 hex, no prefix) of `ref` if the engine has it."""
    if not ref:
        return None
    try:
        return client.images.get(ref).id.removeprefix("sha256:")
    except ImageNotFound:
        return None


def impl_versions(lang: str) -> list[Path]:
    """impl/<lang>/<version>/ folders, newest first."""
    root = REPO / "impl" / lang
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and re.match(r"v\d", p.name)),
                  key=_version_key, reverse=True)


@dataclass(frozen=True)
class Impl:
    name: str  # <lang>-<version>, as in impls.yaml and the seed's test names
    image_id: str


def newest_built(client: docker.DockerClient, lang: str) -> Impl | None:
    """The newest version of `lang` whose image.yaml names an image the engine has."""
    for folder in impl_versions(lang):
        image_id = present_image(client, image_yaml_id(folder))
        if image_id:
            return Impl(f"{lang}-{folder.name}", image_id)
    return None


# ---------------------------------------------------------------------------------------------
# one pair


@dataclass
class Session:
    """The session's worker host and its running global services."""

    host: Host
    services: Services
    router_image: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _ids: itertools.count = field(default_factory=itertools.count)

    def next_run_id(self) -> str:
        return f"e2e-{self.token}-{next(self._ids)}"


@dataclass
class PairResult:
    exit_code: int | None  # None: the run timed out and was killed
    rtt_ms: float | None
    reason: str | None
    dialer_stdout: str
    dialer_stderr: str
    log: str  # every service's output, merged in time order
    duration: float
    project: str
    compose_file: str
    up_s: float | None
    run_s: float | None
    down_s: float | None
    leftovers: list[str]
    # With evidence=True: each router's capture and each client's key log, by capture name.
    evidence: dict[str, bytes] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.rtt_ms is not None

    def summary(self) -> str:
        def t(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}s"
        rtt = "-" if self.rtt_ms is None else f"{self.rtt_ms:g} ms"
        return (f"{self.project}: exit={self.exit_code} rtt={rtt} reason={self.reason} "
                f"up={t(self.up_s)} run={t(self.run_s)} down={t(self.down_s)} all={t(self.duration)}")


def run_pair(session: Session, dialer_image: str, listener_image: str, transport: str, *,
             test_name: str | None = None, delay_ms: int = 50,
             public_allow: tuple[str, ...] | None = None,
             timeout: float = DEFAULT_TIMEOUT_S, secure_channel: str | None = None,
             muxer: str | None = None, dialer_contract: str = "holepunch",
             listener_contract: str = "holepunch", holders_for_ours: bool = True,
             evidence: bool = False, warm: WarmRouters | None = None) -> PairResult:
    """Run one hole-punch test the way a worker does, and always tear it down. With `warm`, on
    the routers it started for this test if it has them, and it starts the next test's."""
    host = session.host
    test_name = test_name or f"{dialer_image[:12]} x {listener_image[:12]} ({transport})"
    cell = warm.take(host.services.client, image_ref(session.router_image)) if warm is not None else None
    if cell is not None:
        lans, networks = cell.lans, cell.networks
    else:
        lans, networks = host.lans.lease(host.leases, f"e2e {test_name}")  # the worker's pool
    try:
        spec = spec_for(test_name, transport, dialer_image, listener_image, session.router_image,
                        session.next_run_id(), session.services, host, lans, delay_ms, public_allow,
                        secure_channel=secure_channel, muxer=muxer,
                        dialer_contract=dialer_contract, listener_contract=listener_contract,
                        holders_for_ours=holders_for_ours, evidence=evidence,
                        lan_networks=networks)
        run = execute(spec, lambda: session.services, host, timeout, cell=cell, warm=warm)
    finally:
        host.leases.release(lans)
    rtt, reason = run.outcome()
    return PairResult(exit_code=run.exit_code, rtt_ms=rtt, reason=reason,
                      dialer_stdout=run.dialer_stdout, dialer_stderr=run.dialer_stderr,
                      log=run.log, duration=run.seconds, project=spec.project,
                      compose_file=run.compose_file, up_s=run.up_s, run_s=run.run_s,
                      down_s=run.down_s, leftovers=run.leftovers, evidence=run.evidence)
