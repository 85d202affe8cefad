"""One shard's consumer: read, batch, land, checkpoint — nothing acknowledged before durable."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import TypeVar

import orjson

from tributary.clock import Clock
from tributary.layout import Zone
from tributary.metrics import Metrics, Unit
from tributary.retry import RetryPolicy, Sleep, retry
from tributary_stream.lander import Lander, Line, landed_through
from tributary_stream.lease import Checkpoint, Lease, LeaseStore
from tributary_stream.processing import ItemSink, Processor
from tributary_stream.route import Router, Target
from tributary_stream.settings import StreamSettings
from tributary_stream.stream import IteratorExpiredError, Record, StreamReader, ThrottledError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Shutdown(StrEnum):
    """Why a shard consumer stopped (the KCL's shutdown reasons)."""

    SHARD_END = "SHARD_END"  # read to the end and checkpointed SHARD_END
    LEASE_LOST = "LEASE_LOST"  # another worker owns it: stopped without checkpointing
    REQUESTED = "REQUESTED"  # graceful stop: flushed and checkpointed


class LeaseLostError(Exception):
    """A fenced write failed: the lease belongs to someone else now."""


@dataclass(frozen=True, slots=True)
class Limits:
    """When a batch is cut."""

    max_records: int
    max_bytes: int
    max_age_s: float
    idle_flush_s: float

    @classmethod
    def from_settings(cls, s: StreamSettings) -> Limits:
        """The limits configured in `s`."""
        return cls(s.batch_max_records, s.batch_max_bytes, s.batch_max_age_s, s.idle_flush_s)


class _Buffer:
    """Lines read but not yet landed, grouped by target, plus the position they cover."""

    def __init__(self) -> None:
        self.lines: dict[Target, list[Line]] = defaultdict(list)
        self.count = 0
        self.size = 0
        self.first_arrival: float | None = None
        self.through: str | None = None  # last Kinesis sequence number fully taken in

    def add(self, target: Target, line: Line) -> None:
        self.lines[target].append(line)
        self.count += 1
        self.size += len(line.line) + 1
        if self.first_arrival is None:
            self.first_arrival = line.arrival.timestamp()


class ShardConsumer:
    """Consumes one leased shard until its end, a lost lease, or a stop request."""

    def __init__(
        self,
        lease: Lease,
        store: LeaseStore,
        reader: StreamReader,
        router: Router,
        lander: Lander,
        limits: Limits,
        clock: Clock,
        metrics: Metrics,
        *,
        get_records_limit: int = 10_000,
        idle_poll_s: float = 1.0,
        shard_closed: Callable[[str], Awaitable[bool]] | None = None,
        processing: tuple[Processor, ItemSink] | None = None,
        initial_timestamp: datetime | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.lease = lease
        self._store = store
        self._reader = reader
        self._router = router
        self._lander = lander
        self._limits = limits
        self._clock = clock
        self._metrics = metrics
        self._limit = get_records_limit
        self._idle_poll = idle_poll_s
        self._shard_closed = shard_closed
        self._processing = processing
        self._initial_timestamp = initial_timestamp
        self._sleep = sleep
        self._landed: dict[str, str] = dict(lease.landed)
        self.lost = asyncio.Event()  # set by the worker when a renewal finds the lease taken
        # Renewals (by the worker) and checkpoints (here) are both fenced on the counter and
        # a renewal changes it: one at a time, so we never fence ourselves out.
        self.lease_lock = asyncio.Lock()
        self.checkpointed_at = clock.monotonic()

    @property
    def shard_id(self) -> str:
        """The shard this consumer reads."""
        return self.lease.key

    async def run(self, stop: asyncio.Event) -> Shutdown:
        """Consume until the shard ends, the lease is lost, or `stop` is set."""
        try:
            return await self._consume(stop)
        except LeaseLostError:
            return Shutdown.LEASE_LOST

    async def _consume(self, stop: asyncio.Event) -> Shutdown:
        position = self.lease.checkpoint
        iterator = await self._call(
            partial(self._reader.iterator, self.shard_id, position, self._initial_timestamp)
        )
        buffer = _Buffer()
        idle_since = self._clock.monotonic()
        throttled = 0
        while not stop.is_set():
            if self.lost.is_set():
                return Shutdown.LEASE_LOST
            try:
                page = await self._reader.get_records(iterator, self._limit)
                throttled = 0
            except ThrottledError:
                throttled += 1
                self._metrics.add("GetRecordsThrottled", 1, shard=self.shard_id)
                await self._sleep(RetryPolicy(base_delay=0.2, max_delay=5).delay(throttled))
                continue
            except IteratorExpiredError:
                resume = buffer.through or position
                iterator = await self._call(
                    partial(self._reader.iterator, self.shard_id, resume, None)
                )
                continue
            for group in _by_sequence(page.records):
                if self._should_cut(buffer, group[0]):
                    position = await self._flush(buffer) or position
                    buffer = _Buffer()
                self._take_in(buffer, group)
            self._metrics.gauge(
                "MillisBehindLatest", page.millis_behind, Unit.MILLISECONDS, shard=self.shard_id
            )
            ended = page.next_iterator is None or bool(page.children)
            if (
                not ended
                and not page.records
                and page.millis_behind == 0
                and (self._shard_closed is not None and await self._shard_closed(self.shard_id))
            ):
                ended = True  # emulators that never return a null iterator (moto)
            if ended:
                await self._flush(buffer)
                await self._checkpoint(Checkpoint.SHARD_END)
                return Shutdown.SHARD_END
            iterator = page.next_iterator or iterator
            now = self._clock.monotonic()
            if page.records:
                idle_since = now
            elif buffer.through is not None and now - idle_since >= self._limits.idle_flush_s:
                position = await self._flush(buffer) or position
                buffer = _Buffer()
            # A full page means more is waiting, whatever MillisBehindLatest says (moto always
            # says 0); 0.2 s keeps us within 5 GetRecords/s per shard.
            behind = page.millis_behind > 0 or len(page.records) >= self._limit
            await self._sleep(0.2 if behind and page.records else self._idle_poll)
        if not self.lost.is_set():
            await self._flush(buffer)
        return Shutdown.REQUESTED

    def _should_cut(self, buffer: _Buffer, next_record: Record) -> bool:
        if buffer.count == 0:
            return False
        limits = self._limits
        age = next_record.arrival.timestamp() - (buffer.first_arrival or 0.0)
        return (
            buffer.count >= limits.max_records
            or buffer.size >= limits.max_bytes
            or age >= limits.max_age_s
        )

    def _take_in(self, buffer: _Buffer, group: list[Record]) -> None:
        """Route one Kinesis record (all its sub-records) into the buffer; an aggregate is never
        split across batches, so a checkpoint is always a whole Kinesis record."""
        for record in group:
            target, line = self._router.route(self.shard_id, record)
            if int(record.sequence) > landed_through(self._landed, target):
                buffer.add(target, Line(record.sequence, record.arrival, line))
        buffer.through = group[-1].sequence

    async def _flush(self, buffer: _Buffer) -> str | None:
        """Land everything buffered, then checkpoint what it covers. Returns the checkpoint."""
        if buffer.through is None:
            return None
        if self.lost.is_set():
            raise LeaseLostError(self.shard_id)
        for target, lines in buffer.lines.items():
            await self._call(partial(self._lander.land, target, lines, self._landed))
        if self._processing is not None:
            await self._process(buffer)
        await self._checkpoint(buffer.through)
        return buffer.through

    async def _process(self, buffer: _Buffer) -> None:
        """The second prong: items derived from the landed raw records, durable before the
        checkpoint. Upserts by id, so lines an earlier attempt processed are simply redone."""
        assert self._processing is not None
        processor, sink = self._processing
        items = [
            item
            for target, lines in buffer.lines.items()
            if target.zone is Zone.RAW
            for line in lines
            if (item := processor(orjson.loads(line.line))) is not None
        ]
        if items:
            await self._call(partial(sink.put_items, items))
            self._metrics.add("ItemsProcessed", len(items), shard=self.shard_id)

    async def _checkpoint(self, checkpoint: str) -> None:
        if checkpoint != Checkpoint.SHARD_END:
            at = int(checkpoint)
            self._landed = {k: v for k, v in self._landed.items() if int(v) > at}
        else:
            self._landed = {}
        landed = dict(self._landed)
        async with self.lease_lock:
            updated = await self._call(
                lambda: self._store.checkpoint(self.lease, checkpoint, landed)
            )
        if updated is None:
            self.lost.set()
            self._metrics.add("LeasesLost", 1, shard=self.shard_id)
            raise LeaseLostError(self.shard_id)
        self.lease = updated
        self.checkpointed_at = self._clock.monotonic()
        self._metrics.add("Checkpoints", 1, shard=self.shard_id)

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await retry(
            operation,
            RetryPolicy(max_attempts=8, base_delay=0.1, max_delay=3.0),
            sleep=self._sleep,
            what=f"shard {self.shard_id}",
        )


def _by_sequence(records: Sequence[Record]) -> list[list[Record]]:
    """Group user records by Kinesis record (sub-records of one aggregate stay together)."""
    groups: list[list[Record]] = []
    for record in records:
        if groups and groups[-1][0].sequence == record.sequence:
            groups[-1].append(record)
        else:
            groups.append([record])
    return groups
