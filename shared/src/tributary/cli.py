"""What every command line shares: exit codes a scheduler can act on, and how failures print.

0 done; 1 a transient failure (run again later); 2 a permanent one that needs a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn

from tributary.errors import PermanentError, TributaryError

EXIT_OK, EXIT_RETRY, EXIT_PERMANENT = 0, 1, 2

log = logging.getLogger(__name__)


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
    """Call `once`, then again every `interval` seconds, until SIGTERM or SIGINT. A pass reports
    its failures as its exit code and the next pass retries; an exception out of `once` ends the
    loop (callers catch what they classify, e.g. `TributaryError`, so only a bug does).

    A stop cancels the pass in progress: waiting for it could take longer than any stop budget
    (a vendor gone away is retried with backoff, page after page), so `once` must be safe to
    cancel at any await, as it is to crash there (the importer resumes from its last
    checkpoint). The exit code is that of the last pass that finished, so a supervisor sees
    whether the loop ended healthy; `EXIT_RETRY` when none did. With `signals=False` it leaves
    the signals to the caller and runs until its task is cancelled."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT) if signals else ():
        loop.add_signal_handler(sig, stop.set)
    code: int | None = None
    while not stop.is_set():
        finished = await _unless_stopped(once, stop)
        if finished is None:
            log.warning(
                "stopping: the pass in progress is cancelled; the next run resumes from the last"
                " checkpoint"
            )
            break
        code = finished
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    return EXIT_RETRY if code is None else code


async def _unless_stopped(once: Callable[[], Awaitable[int]], stop: asyncio.Event) -> int | None:
    """`once()`'s code, or None when `stop` was set first (the pass is then cancelled and
    awaited, so its clean-up has run when this returns)."""
    pass_ = asyncio.ensure_future(once())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({pass_, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the caller cancels us
        stopped.cancel()
        if not pass_.done():
            pass_.cancel()
            await asyncio.wait({pass_})
    if pass_.cancelled():
        return None
    return pass_.result()  # a pass that finished as it was cancelled still counts; a bug raises


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
