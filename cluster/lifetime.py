"""A child process that ends with its parent, even when the parent is SIGKILLed.

Linux's PR_SET_PDEATHSIG: the kernel sends the child a signal when the thread that forked it
exits. Elsewhere (or if the call fails) it does nothing, and the watchdog's polling
(controller.run.watchdog) is what ends the child.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies; True if it will.

    `parent`, when given, is the pid the caller expects as its parent: if it died before the
    request took effect (the child is an orphan already), the signal is sent at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except OSError:
        return False
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


def preexec_die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], bool]:
    """A `preexec_fn` for subprocess.Popen: the child ends with the process starting it."""
    parent = os.getpid()
    return lambda: die_with_parent(sig, parent)
