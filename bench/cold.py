"""Benchmark: the README's first command, cold: a fresh clone, an empty home, an empty engine.

What a newcomer runs on a fresh machine of this kind,

    bash .ci/setup && .venv/bin/holepunch-controller submit --kind full

timed end to end with nothing cached: the repository cloned afresh (its HEAD) into a temporary
folder; HOME an empty folder, so pip's, cargo's, go's and npm's caches and the holepunch cache
are empty and every dependency comes from its registry; and a Docker engine of its own (a
second dockerd with its own data root and socket: no image, no build cache), so the machine's
engine and its images are left as they were. The toolchains stay the machine's (RUSTUP_HOME and
PYENV_ROOT point at them), as they come with a machine of this kind; the Debian packages
.ci/setup installs are installed here already (on a new machine that is a minute or two more).

The engine and the command run in a network namespace of their own (`hp-cold`), reached from
the host by a veth pair, so the two engines share no bridge, route or iptables chain: the same
subnets in both, each engine's own FORWARD policy and guard, and nothing left in the host's
kernel when the namespace is deleted (a killed engine's bridges, holding the simulated
internet's subnet, once made every later test fail with "No route to host"). The namespace's own
processes reach the package registries through the host (masqueraded); nothing a container of
that engine sends is forwarded out of it.

Prints the command's wall time and exit code, when setup ended, each image's build (from the
controller's own lines), when the pass began and ended, and how many lines the terminal got;
the whole output goes to --log. Asserts nothing. Run as root, alone on the machine: it keeps
both cores busy for about half an hour:

    flock /tmp/holepunch-e2e.lock .venv/bin/python bench/cold.py [--budget 3600] [--log FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localcluster import Deadline, bounded_main

REPO = Path(__file__).resolve().parents[1]
COMMAND = "bash .ci/setup && .venv/bin/holepunch-controller submit --kind full"
NETNS = "hp-cold"
HOST_END, NS_END = "hp-cold-h", "hp-cold-n"
HOST_ADDRESS, NS_ADDRESS = "10.254.1.1", "10.254.1.2"  # a /30 of their own, no other use
LABEL = "holepunch.owner=bench-cold"
BUILT = re.compile(r"^\s*(\S+)\s+built, image \w+, in ([\d.]+) s")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), check=check, capture_output=True, timeout=120)


def _in_ns(*argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return _run("ip", "netns", "exec", NETNS, *argv, check=check)


# the host's rules for the namespace's veth: its own address masqueraded out, replies back in
HOST_RULES = [["-t", "nat", "POSTROUTING", "-s", f"{NS_ADDRESS}/32", "!", "-o", HOST_END,
               "-j", "MASQUERADE"],
              ["FORWARD", "-i", HOST_END, "-s", f"{NS_ADDRESS}/32", "-j", "ACCEPT"],
              ["FORWARD", "-o", HOST_END, "-d", f"{NS_ADDRESS}/32", "-m", "conntrack",
               "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]]


def _host_rule(action: str, rule: list[str]) -> subprocess.CompletedProcess[bytes]:
    table, (chain, *spec) = (rule[:2], rule[2:]) if rule[0] == "-t" else ([], rule)
    return _run("iptables", "-w", "5", *table, action, chain, *spec, check=False)


class Engine:
    """A dockerd of its own under `root` (data root, exec root, socket), in its own namespace."""

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "docker.sock"
        self.process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, deadline: Deadline) -> None:
        self.remove_namespace()  # what a killed run of this bench left
        _run("ip", "netns", "add", NETNS)
        _in_ns("ip", "link", "set", "lo", "up")
        _run("ip", "link", "add", HOST_END, "type", "veth", "peer", "name", NS_END)
        _run("ip", "link", "set", NS_END, "netns", NETNS)
        _run("ip", "addr", "add", f"{HOST_ADDRESS}/30", "dev", HOST_END)
        _run("ip", "link", "set", HOST_END, "up")
        _in_ns("ip", "addr", "add", f"{NS_ADDRESS}/30", "dev", NS_END)
        _in_ns("ip", "link", "set", NS_END, "up")
        _in_ns("ip", "route", "add", "default", "via", HOST_ADDRESS)
        for rule in HOST_RULES:
            if _host_rule("-C", rule).returncode != 0:
                _host_rule("-I", rule).check_returncode()
        log = (self.root / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            # nsenter, not `ip netns exec`: that mounts a /sys of its own, without the cgroups
            ["nsenter", f"--net=/var/run/netns/{NETNS}", "dockerd",
             "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"),
             "-H", self.host, "--label", LABEL],
            stdout=log, stderr=subprocess.STDOUT)
        while deadline.left() > 0:
            if subprocess.run(["docker", "-H", self.host, "info"], capture_output=True,
                              check=False).returncode == 0:
                break
            if self.process.poll() is not None:
                tail = (self.root / "dockerd.log").read_text(errors="replace").splitlines()[-3:]
                raise SystemExit(f"cold: dockerd exited {self.process.returncode}: "
                                 + " / ".join(tail))  # the log goes with the folder
            time.sleep(0.2)
        else:
            raise SystemExit("cold: dockerd did not answer in time")
        # its containers (builds, tests) never leave the namespace; its own processes may
        _in_ns("iptables", "-w", "5", "-I", "DOCKER-USER", "-o", NS_END, "-j", "DROP")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            docker = f"docker -H {self.host}"
            subprocess.run(["bash", "-c", f"{docker} ps -aq | xargs -r {docker} rm -f; "
                            f"{docker} network prune -f"], capture_output=True, check=False,
                           timeout=300)
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.remove_namespace()

    @staticmethod
    def remove_namespace() -> None:
        """The namespace goes with every bridge and route in it; then the host's veth rules."""
        _run("ip", "netns", "delete", NETNS, check=False)
        _run("ip", "link", "delete", HOST_END, check=False)
        for rule in HOST_RULES:
            while _host_rule("-C", rule).returncode == 0:
                _host_rule("-D", rule)


def cold_env(home: Path, engine: Engine) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HOLEPUNCH_", "CARGO_", "GO", "NPM_", "PIP_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), DOCKER_HOST=engine.host,
               HOLEPUNCH_RUN_DIR=str(engine.root / "run"))  # locks and leases of its own
    for name, default in (("RUSTUP_HOME", Path.home() / ".rustup"), ("PYENV_ROOT", Path.home() / ".pyenv")):
        path = Path(os.environ.get(name, default))
        if path.is_dir():
            env[name] = str(path)
    cargo_bin = Path.home() / ".cargo" / "bin"  # rustup's proxies; the registry cache moves to HOME
    env["PATH"] = f"{env.get('PATH', '')}:{cargo_bin}"
    return env


def run(deadline: Deadline, log_path: Path, command: str) -> int:
    root = Path(tempfile.mkdtemp(prefix="hp-cold-", dir="/var/tmp"))
    engine = Engine(root)
    try:
        clone, home = root / "clone", root / "home"
        home.mkdir()
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        engine.start(deadline)
        started = time.monotonic()
        marks: list[tuple[float, str]] = []
        lines = 0
        with log_path.open("w") as log:
            process = subprocess.Popen(["ip", "netns", "exec", NETNS, "bash", "-c", command],
                                       cwd=clone, env=cold_env(home, engine), text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert process.stdout is not None  # stdout=PIPE
            for line in process.stdout:
                at = time.monotonic() - started
                lines += 1
                log.write(f"{at:8.1f} {line}")
                text = line.strip()
                if text.startswith("setup: ready") or BUILT.match(line) or \
                        text.startswith(("test pass", "submitted", "pass:")) or "passed" in text:
                    marks.append((at, text[:150]))
                if deadline.left() <= 0:
                    process.kill()
                    break
            code = process.wait()
        wall = time.monotonic() - started
        print(f"cold: `{command}`: exit {code} in {wall:.0f} s ({wall / 60:.1f} min), "
              f"{lines} lines of output (all in {log_path})")
        builds = [(m.group(1), float(m.group(2))) for _, text in marks if (m := BUILT.match(text))]
        if builds:
            print(f"  image builds: {', '.join(f'{name} {secs:.0f} s' for name, secs in builds)} "
                  f"(sum {sum(secs for _, secs in builds):.0f} s)")
        for at, text in marks:
            if not BUILT.match(text):
                print(f"  {at:7.1f} s  {text}")
        return code
    finally:
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=3600, help="seconds before it gives up")
    parser.add_argument("--log", type=Path, default=Path("/tmp/holepunch-cold.log"),
                        help="where the command's whole output goes, each line with its time")
    parser.add_argument("--command", default=COMMAND,
                        help="what to run in the fresh clone (default: the README's first command)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("cold: run as root (it starts a dockerd of its own)", file=sys.stderr)
        return 2
    return bounded_main(lambda deadline: run(deadline, args.log, args.command), args.budget)


if __name__ == "__main__":
    sys.exit(main())
