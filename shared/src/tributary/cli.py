"""What every command line shares: exit codes a scheduler can act on, and how failures print.

0 done; 1 a transient failure (run again later); 2 a permanent one that needs a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn

from tributary.errors import PermanentError, TributaryError

EXIT_OK, EXIT_RETRY, EXIT_PERMANENT = 0, 1, 2


def failed(name: str, exc: TributaryError) -> int:
    """Say that one item (a source, a dataset) failed and why; the exit code it calls for."""
    if isinstance(exc, PermanentError):
        print(f"{name}: failed: {exc}", file=sys.stderr)
        return EXIT_PERMANENT
    print(f"{name}: failed, retry later: {exc}", file=sys.stderr)
    return EXIT_RETRY


async def every(
    interval: float, once: Callable[[], Awaitable[int]], *, signals: bool = True
) -> int:
    """Call `once`, then again every `interval` seconds, until SIGTERM or SIGINT (a pass in
    progress finishes first). A pass reports its failures as its exit code and the next pass
    retries; an exception out of `once` ends the loop (callers catch what they classify, e.g.
    `TributaryError`, so only a bug does). The exit code is that of the last pass, so a
    supervisor sees whether the loop ended healthy. With
    `signals=False` it leaves the signals to the caller and runs until its task is cancelled."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT) if signals else ():
        loop.add_signal_handler(sig, stop.set)
    code = EXIT_OK
    while not stop.is_set():
        code = await once()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    return code


def run_and_exit(main: Coroutine[Any, Any, int]) -> NoReturn:
    """Run a command's coroutine; exit with its code, or with the code its error calls for."""
    try:
        code = asyncio.run(main)
    except PermanentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_PERMANENT
    except TributaryError as exc:
        print(f"error (transient, run again later): {exc}", file=sys.stderr)
        code = EXIT_RETRY
    sys.exit(code)
