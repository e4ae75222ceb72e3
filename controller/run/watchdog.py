"""The embedded cluster's watchdog: when its `submit` dies, even by SIGKILL, the embedded Redis,
worker and reporter end at once and what they leave is removed.

`submit` starts it first, in a session of its own (a signal to submit's process group does not
reach it), and writes to its standard input: `pg <pid>` for each child's process group, `stop`
when it has stopped them itself. End of input without `stop`, or a parent that is gone, means
submit died: every group is killed (SIGKILL: a task process dies with its worker too), then
`holepunch-worker --cleanup` removes the host's test projects, its leases and, if no other live
host needs them, the global services; the embedded folder goes last. The children also carry a
parent-death signal (cluster.lifetime), so they end even if this watchdog is killed with submit;
the next run's start-up clean-up then removes what they left.

    python -m controller.run.watchdog PARENT_PID HOST CACHE_DIR FOLDER WORKER_BIN
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time

POLL_S = 0.2


def kill_groups(groups: set[int]) -> None:
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def watch(parent: int, stream=sys.stdin) -> tuple[bool, set[int]]:
    """Read instructions until `stop` (True) or the parent's death (False); the groups named."""
    groups: set[int] = set()
    fd = stream.fileno()
    buffer = b""
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                return False, groups  # end of input without `stop`: submit is gone
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                word, _, value = line.decode().strip().partition(" ")
                if word == "stop":
                    return True, groups
                if word == "pg" and value.isdigit():
                    groups.add(int(value))
        if os.getppid() != parent:
            return False, groups


def main(argv: list[str]) -> int:
    parent, host, cache_dir, folder, worker_bin = int(argv[0]), *argv[1:5]
    stopped, groups = watch(parent)
    if stopped:
        return 0
    started = time.monotonic()
    kill_groups(groups)
    subprocess.run([worker_bin, "--cleanup", "-n", host, "--cache-dir", cache_dir],
                   stdout=sys.stderr, stderr=sys.stderr, check=False)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"holepunch watchdog: submit {parent} died; stopped its embedded cluster {host} and "
          f"removed what it left in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is submit's to handle
    sys.exit(main(sys.argv[1:]))
