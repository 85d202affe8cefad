"""Simulated time: an asyncio event loop whose clock jumps to the next timer, and its clock."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any


class SimLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on simulated time: whenever every task waits, time jumps to the
    next timer. Every actor runs as its own task and every DynamoDB request is an
    `asyncio.sleep` of its latency, so actions interleave in true time order (a request is a
    switch point, requests of one actor may run concurrently) and time never goes back."""

    def __init__(self) -> None:
        super().__init__()
        self._sim_t = 0.0
        selector: Any = self._selector  # type: ignore[attr-defined]
        select = selector.select

        def jump(timeout: float | None = None) -> Any:
            if timeout is None:
                raise RuntimeError("simulation stuck: every task waits and no timer is set")
            self._sim_t += timeout
            return select(0)

        selector.select = jump

    def time(self) -> float:
        return self._sim_t


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` (a simulation) to completion on a fresh SimLoop."""
    loop = SimLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class FakeClock:
    """The simulation's time: the running SimLoop's, which never goes back."""

    @property
    def t(self) -> float:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, SimLoop):
            raise RuntimeError("FakeClock needs a SimLoop (leases.run)")
        return loop.time()

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)
