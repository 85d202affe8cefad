"""A shard's recent throughput, measured where its records are read (for load balancing)."""

from __future__ import annotations

from datetime import datetime

from tributary.clock import Clock
from tributary_stream.stream import Page, Shard, StreamReader


class ShardMeter:
    """Bytes and records read from one shard; `rates()` gives bytes/s and records/s since the
    last call, smoothed (an exponentially weighted mean, half weight to the newest interval)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._at = clock.monotonic()
        self._bytes = 0
        self._records = 0
        self.bytes_per_s = 0.0
        self.records_per_s = 0.0

    def add(self, page: Page) -> None:
        """Count a page."""
        self._records += len(page.records)
        self._bytes += sum(len(record.data) for record in page.records)

    def rates(self) -> tuple[float, float]:
        """(bytes/s, records/s), updated with what was read since the last call."""
        now = self._clock.monotonic()
        elapsed = now - self._at
        if elapsed > 0:
            self.bytes_per_s = (self.bytes_per_s + self._bytes / elapsed) / 2
            self.records_per_s = (self.records_per_s + self._records / elapsed) / 2
            self._at, self._bytes, self._records = now, 0, 0
        return self.bytes_per_s, self.records_per_s


class MeteredReader:
    """A `StreamReader` that counts what it reads into a `ShardMeter`."""

    def __init__(self, reader: StreamReader, meter: ShardMeter) -> None:
        self._reader = reader
        self.meter = meter

    async def list_shards(self) -> list[Shard]:
        """As the wrapped reader."""
        return await self._reader.list_shards()

    async def iterator(self, shard_id: str, position: str, timestamp: datetime | None) -> str:
        """As the wrapped reader."""
        return await self._reader.iterator(shard_id, position, timestamp)

    async def get_records(self, iterator: str, limit: int) -> Page:
        """As the wrapped reader, counted."""
        page = await self._reader.get_records(iterator, limit)
        self.meter.add(page)
        return page
