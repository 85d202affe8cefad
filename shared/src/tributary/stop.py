"""SIGTERM and SIGINT as a stop request that is safe to receive at any moment.

A Python signal handler runs on the main thread between two bytecodes, wherever that thread is:
possibly inside `threading.Event.wait`, holding the event's lock. A handler that takes a lock
(`Event.set()` does) can then wait for itself forever, and every further signal stacks another
blocked handler. So the handler here only writes one byte to a non-blocking pipe; a watcher
thread reads the pipe and does the rest (counts, sets an event, runs the callbacks), as ordinary
thread code that may take locks.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Install with `install()`; then `wait(timeout)`, `requested`, `count`, `on_request(fn)`."""

    def __init__(self, signals: Sequence[signal.Signals] = STOP_SIGNALS) -> None:
        self._signals = tuple(signals)
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._requested = threading.Event()
        self._callbacks: list[Callable[[int], None]] = []
        self._seen = 0
        self._watcher = threading.Thread(target=self._watch, name="stop-request", daemon=True)
        self._previous: dict[signal.Signals, object] = {}

    def install(self) -> StopRequest:
        """Handle the signals from now on (main thread only, as `signal.signal` requires)."""
        self._watcher.start()
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Put the previous handlers back."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def on_request(self, callback: Callable[[int], None]) -> None:
        """Call `callback(n)` on the watcher thread for the n-th signal (1 = the first)."""
        self._callbacks.append(callback)

    @property
    def requested(self) -> bool:
        """True once any stop signal has arrived and been seen by the watcher."""
        return self._requested.is_set()

    @property
    def count(self) -> int:
        """How many stop signals the watcher has seen."""
        return self._seen

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested or `timeout` passes; True when requested."""
        return self._requested.wait(timeout)

    def request(self) -> None:
        """Ask for a stop from code (a failed service, say) exactly as a signal would."""
        self._handle(0, None)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # No locks and as few bytecodes as can be (a signal may land inside this handler too):
        # one byte into a non-blocking pipe. A full pipe means the watcher has bytes to read
        # already, which is all a stop needs.
        try:  # noqa: SIM105 - contextlib.suppress would cost bytecodes here
            os.write(self._write_fd, b"\x01")
        except BlockingIOError:
            pass

    def _watch(self) -> None:
        while True:
            chunk = os.read(self._read_fd, 64)
            if not chunk:
                return
            for _ in chunk:
                self._seen += 1
                self._requested.set()
                for callback in self._callbacks:
                    self._run(callback)

    def _run(self, callback: Callable[[int], None]) -> None:
        # The watcher is a thread's top level: a failing callback is logged, and the next
        # signal (a second Ctrl+C) still works.
        try:
            callback(self._seen)
        except Exception:  # the watcher thread's top level: log, and keep watching
            logging.getLogger(__name__).exception("stop callback %r failed", callback)
