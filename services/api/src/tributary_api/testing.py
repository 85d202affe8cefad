"""Fakes for the API's side effects, for tests that run the real app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tributary.errors import SinkUnavailableError
from tributary.metrics import Metrics
from tributary.raw_writer import RawWriter
from tributary_api.app import Backends, BackendsFactory
from tributary_api.settings import ApiSettings
from tributary_api.sink import Delivery, MemorySink


def fixed_backends(sink: MemorySink | FlakySink, quarantine: RawWriter) -> BackendsFactory:
    """A backends factory that hands the app these instances, so the test can inspect them."""

    @asynccontextmanager
    async def factory(_: ApiSettings, __: Metrics) -> AsyncIterator[Backends]:
        yield Backends(sink, quarantine)

    return factory


class FlakySink(MemorySink):
    """A memory sink that fails while `down` or for the next `fail_next(n)` deliveries."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self._failures_left = 0

    def fail_next(self, count: int) -> None:
        """Fail the next `count` deliveries."""
        self._failures_left = count

    async def deliver(self, delivery: Delivery) -> None:
        """Fail as configured, else remember the delivery."""
        if self.down or self._failures_left:
            self._failures_left = max(0, self._failures_left - 1)
            raise SinkUnavailableError("sink down (fault injected)")
        await super().deliver(delivery)

    async def ping(self) -> None:
        """Fails while down."""
        if self.down:
            raise SinkUnavailableError("sink down (fault injected)")
