"""The host guard: no test packet may leave the machine, whatever its addresses.

The simulated internet is an internal network and the LANs reach it only through their
routers, but a LAN bridge is a plain bridge (DESIGN.md): rules in Docker's DOCKER-USER chain drop
any packet from the LAN pool or to/from the public subnet that would leave by anything but one of
Docker's own bridges.
"""

from __future__ import annotations

import shutil
import subprocess

from cluster.errors import InfrastructureError

COMMENT = "holepunch-guard"


def guard_rules(lan_pool: str, public_subnet: str) -> list[list[str]]:
    drop = ["-m", "comment", "--comment", COMMENT, "-j", "DROP"]
    return [["-s", lan_pool, "!", "-o", "br-+", *drop],
            ["-d", public_subnet, "!", "-o", "br-+", *drop],
            ["-s", public_subnet, "!", "-o", "br-+", *drop]]


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, check=False)


def install_guard(lan_pool: str, public_subnet: str) -> None:
    if shutil.which("iptables") is None:
        raise InfrastructureError("iptables is missing: the host guard cannot be installed")
    if _iptables("-n", "-L", "DOCKER-USER").returncode != 0:
        _iptables("-N", "DOCKER-USER")
    for rule in guard_rules(lan_pool, public_subnet):
        if _iptables("-C", "DOCKER-USER", *rule).returncode != 0:
            result = _iptables("-I", "DOCKER-USER", "1", *rule)
            if result.returncode != 0:
                raise InfrastructureError(f"cannot install the host guard: {result.stderr.strip()}")


def remove_guard(lan_pool: str, public_subnet: str) -> None:
    for rule in guard_rules(lan_pool, public_subnet):
        while _iptables("-C", "DOCKER-USER", *rule).returncode == 0:
            _iptables("-D", "DOCKER-USER", *rule)
