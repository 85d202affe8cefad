"""Nothing the stack starts outlives it: children die with it, and it dies with its parent.

Services run in their own session (so Ctrl+C reaches only the stack), which also means nothing
kills them when the stack is killed: a SIGKILLed `make up` or test run would leave them holding
the ports. On Linux `PR_SET_PDEATHSIG` has the kernel signal a child when its parent goes, and
it survives exec, so the service itself carries it. The kernel sends it when the *thread* that
forked the child ends, not the process: so every child is forked by one spawner thread that
lives as long as this process (a service restarted from a worker thread would otherwise die
with that thread). A JVM a service starts in turn is its own business: PySpark's gateway exits
when its parent's stdin pipe closes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LINUX = sys.platform.startswith("linux")
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(argv, **kwargs)`, forked by the spawner thread, dying with us (Linux)."""
    preexec = _die_with_parent()

    def spawn() -> subprocess.Popen[Any]:
        return subprocess.Popen(list(argv), preexec_fn=preexec, **kwargs)

    return _spawner.submit(spawn).result()


def exit_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask the kernel for `sig` when this process's parent dies (Linux; elsewhere nothing).

    For the supervisor: a SIGKILLed `make` or a closed terminal's shell then stops the stack
    the ordinary way, draining its services."""
    if _LINUX:
        _prctl()(_PR_SET_PDEATHSIG, sig)


def _prctl() -> Callable[..., int]:
    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def _die_with_parent() -> Callable[[], None] | None:
    if not _LINUX:
        return None
    prctl = _prctl()  # looked up before the fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died between the fork and prctl
            os._exit(1)

    return preexec
