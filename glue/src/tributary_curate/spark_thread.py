"""Spark's blocking calls off the event loop, in threads a stop does not wait for forever.

`asyncio.to_thread` runs a call in the loop's default executor, whose threads the interpreter
joins at exit (and `asyncio.run` waits for, closing the loop). A Spark action does not always
return when its job is cancelled: a broadcast being stored while the session stops can wait
forever inside Spark for a block lock (seen: `TorrentBroadcast: Store broadcast … fail, remove
all pieces`, then `BlockInfoManager.acquireLock` parked for good). So the curate command would
never exit on SIGTERM. Each call here runs in a daemon thread of its own: the awaiting task can
be cancelled at once; `settle_spark_threads` gives the calls still running a bounded time to
end (their jobs being cancelled) before the session stops, and the process then exits with any
call still parked. Locally the JVM exits when its Python driver does (it reads the driver's
end of a pipe); on Glue the JVM runs the Python driver, and ends the job itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_running: set[threading.Thread] = set()  # calls not returned yet


async def in_spark_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a new daemon thread (with this context's variables)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if isinstance(error, StopIteration):  # a Future refuses it (as to_thread's would)
            error = RuntimeError(f"{name} raised StopIteration")
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - the awaiting task's, as with to_thread
            error: BaseException | None = exc
            result = None
        else:
            error = None
        finally:
            _running.discard(threading.current_thread())
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    name = f"spark-{getattr(fn, '__name__', 'call')}"
    thread = threading.Thread(target=run, name=name, daemon=True)
    _running.add(thread)
    thread.start()
    return await done


async def settle_spark_threads(within: float) -> bool:
    """Wait up to `within` seconds for the Spark calls still running to return (after a stop
    their jobs are being cancelled); True if none is left."""

    def join() -> None:
        deadline = time.monotonic() + within
        for thread in list(_running):
            thread.join(max(0.0, deadline - time.monotonic()))

    await asyncio.to_thread(join)  # returns within `within`: the executor is not held up
    return not _running
