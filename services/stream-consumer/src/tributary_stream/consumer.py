"""One shard's consumer: read, batch, land, checkpoint — nothing acknowledged before durable."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import TypeVar

from tributary.clock import Clock
from tributary.errors import PermanentError, TransientError
from tributary.layout import Zone
from tributary.metrics import Metrics, Unit
from tributary.retry import RetryPolicy, Sleep, retry
from tributary_stream.concurrency import sleep_unless
from tributary_stream.derive import derive
from tributary_stream.lander import Lander, Line, PutRefusedError, landed_through
from tributary_stream.lease import Checkpoint, Lease, LeaseStore
from tributary_stream.poison import Refusals
from tributary_stream.processing import ItemSink, Processor
from tributary_stream.quarantine import failure_line
from tributary_stream.route import Router, Target
from tributary_stream.settings import StreamSettings
from tributary_stream.stream import (
    MIN_POLL_GAP_S,
    IteratorExpiredError,
    Record,
    StreamReader,
    ThrottledError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_THROTTLES = 30  # GetRecords throttled this many times in a row: give the shard a rest
TIMER_SLACK_S = 0.001  # past a deadline: asyncio may fire a timer a clock tick early
MAX_EXPIRIES = 3  # fresh iterators that expired at once: something is wrong, step back


class Shutdown(StrEnum):
    """Why a shard consumer stopped (the KCL's shutdown reasons)."""

    SHARD_END = "SHARD_END"  # read to the end and checkpointed SHARD_END
    LEASE_LOST = "LEASE_LOST"  # another worker owns it: stopped without checkpointing
    REQUESTED = "REQUESTED"  # graceful stop: flushed and checkpointed
    GIVEN_UP = "GIVEN_UP"  # failed run after run: released for a cool-down (see worker)


class LeaseLostError(Exception):
    """A fenced write failed: the lease belongs to someone else now."""


@dataclass(frozen=True, slots=True)
class Limits:
    """When a batch is cut."""

    max_records: int
    max_bytes: int
    max_age_s: float
    idle_flush_s: float
    # Land a batch as soon as a page finds the shard caught up (fewer Kinesis records than the
    # GetRecords limit, 0 ms behind; an empty page too) rather than after IDLE_FLUSH_S of quiet:
    # least latency, at a cost whenever the consumer keeps up (the usual state): every poll that
    # reads a record lands an object per target and writes a checkpoint (one a shard per
    # IDLE_POLL_S), and the BATCH_MAX_* limits rarely shape a batch.
    flush_when_caught_up: bool = False

    @classmethod
    def from_settings(cls, s: StreamSettings) -> Limits:
        """The limits configured in `s`."""
        return cls(
            s.batch_max_records,
            s.batch_max_bytes,
            s.batch_max_age_s,
            s.idle_flush_s,
            s.flush_when_caught_up,
        )


class _Buffer:
    """Lines read but not yet landed, grouped by target, plus the position they cover."""

    def __init__(self) -> None:
        self.lines: dict[Target, list[Line]] = defaultdict(list)
        self.count = 0
        self.size = 0
        self.first_arrival: datetime | None = None
        self.through: str | None = None  # last Kinesis sequence number fully taken in


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
        end_on_empty_closed: bool = False,
        poison_attempts: int = 3,
        poison_min_s: float = 60.0,
        executor: Executor | None = None,
        processor_timeout_s: float = 10.0,
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
        self._end_on_empty_closed = end_on_empty_closed
        self._refusals = Refusals(poison_attempts, poison_min_s)
        self._max_age = timedelta(seconds=limits.max_age_s)
        self._executor = executor  # where the processor runs (None: the loop's default)
        self._processor_timeout_s = processor_timeout_s
        self._sleep = sleep
        self._landed: dict[str, str] = dict(lease.landed)
        self._empty: set[int] = set()  # empty KPL aggregates read, not yet checkpointed past
        self._failures = Lander(
            lander.writer, lease.key, metrics, lander.compresslevel, stage="processing"
        )
        # Lines raw refused for good: a chain of their own, so that a replay (which may find
        # raw writable again) never rewrites the routed quarantine chain differently.
        self._refused = Lander(
            lander.writer, lease.key, metrics, lander.compresslevel, stage="refused"
        )
        self.lost = asyncio.Event()  # set by the worker when a renewal finds the lease taken
        self.checkpointed_at = clock.monotonic()
        self.active_at = clock.monotonic()  # last turn of the read loop (health signal)
        self.behind = False  # the last page said more records wait (health signal)
        # Runs in a row that failed without moving the checkpoint (counted by the worker's
        # supervision, for its backoff).
        self.strikes = 0

    @property
    def behind_or_failing(self) -> bool:
        """Whether the shard has work it is not getting through (a checkpoint is due)."""
        return self.behind or self.strikes > 0

    @property
    def _start_timestamp(self) -> datetime | None:
        """Where an AT_TIMESTAMP checkpoint starts: the lease's own (a rewind), else the
        configured initial position's."""
        return self.lease.timestamp or self._initial_timestamp

    @property
    def shard_id(self) -> str:
        """The shard this consumer reads."""
        return self.lease.key

    async def run(self, stop: asyncio.Event) -> Shutdown:
        """Consume until the shard ends, the lease is lost, or `stop` is set; may be called
        again after it raised (it resumes from the stored checkpoint)."""
        self._landed = dict(self.lease.landed)
        self._empty = set()
        try:
            return await self._consume(stop)
        except LeaseLostError:
            return Shutdown.LEASE_LOST

    async def _consume(self, stop: asyncio.Event) -> Shutdown:
        position = self.lease.checkpoint
        iterator = await self._call(
            partial(self._reader.iterator, self.shard_id, position, self._start_timestamp)
        )
        buffer = _Buffer()
        idle_since = self._clock.monotonic()
        throttled = expired = 0
        while not stop.is_set():
            self.active_at = self._clock.monotonic()
            if self.lost.is_set():
                return Shutdown.LEASE_LOST
            try:
                page = await self._reader.get_records(iterator, self._limit)
                throttled = expired = 0
            except ThrottledError as exc:
                throttled += 1
                self._metrics.add("GetRecordsThrottled", 1, shard=self.shard_id)
                if throttled >= MAX_THROTTLES:  # someone else reads this shard hard: step back
                    raise TransientError(
                        f"GetRecords on {self.shard_id} throttled {throttled} times in a row; "
                        "another consumer may be reading this shard"
                    ) from exc
                # Full jitter on top of the least gap a shard may be read again at (5 calls a
                # second): never sooner, and two throttled readers still spread out. 5 s at most.
                backoff = RetryPolicy(base_delay=0.2, max_delay=5 - MIN_POLL_GAP_S).delay(throttled)
                await self._pause(MIN_POLL_GAP_S + backoff, stop)
                continue
            except IteratorExpiredError as exc:
                expired += 1
                if expired >= MAX_EXPIRIES:  # a fresh iterator that is expired at once
                    raise TransientError(
                        f"every new iterator for {self.shard_id} expired at once ({expired}×)"
                    ) from exc
                resume = buffer.through or position
                iterator = await self._call(
                    partial(self._reader.iterator, self.shard_id, resume, self._start_timestamp)
                )
                # The refused call was a GetRecords call too.
                await self._pause(MIN_POLL_GAP_S, stop)
                continue
            # Counted once checkpointed past, so a replay does not count them again.
            self._empty.update(int(sequence) for sequence in page.empty_aggregates)
            position, buffer = await self._take_page(buffer, page.records, position)
            self._metrics.gauge(
                "MillisBehindLatest", page.millis_behind, Unit.MILLISECONDS, shard=self.shard_id
            )
            self.behind = page.millis_behind > 0
            ended = page.next_iterator is None or bool(page.children)
            if (
                self._end_on_empty_closed
                and not ended
                and not page.records
                and page.millis_behind == 0
                and (self._shard_closed is not None and await self._shard_closed(self.shard_id))
            ):
                # Only for emulators that never return a null iterator (moto): on Kinesis an
                # empty page can come before more records of a closed shard.
                ended = True
            if ended:
                await self._flush(buffer)
                await self._checkpoint(Checkpoint.SHARD_END)
                return Shutdown.SHARD_END
            iterator = page.next_iterator or iterator
            now = self._clock.monotonic()
            # A full page (the limit counts Kinesis records, not the user records of KPL
            # aggregates) means more is waiting, whatever MillisBehindLatest says (moto may say 0:
            # it measures from the records' creation times, equal for a quick fill).
            behind = page.millis_behind > 0 or page.kinesis_records >= self._limit
            if page.records:
                idle_since = now
            if buffer.through is not None and (
                # caught up: this page, with records or without (the last one read was full)
                (self._limits.flush_when_caught_up and not behind)
                or (not page.records and now - idle_since >= self._limits.idle_flush_s)
            ):
                position = await self._flush(buffer) or position
                buffer = _Buffer()
            # Behind, even on an empty page: Kinesis answers empty where the shard holds no
            # records at the iterator, and "it might take multiple calls to get to a portion of
            # the shard that contains records" (GetRecords).
            pause = MIN_POLL_GAP_S if behind else self._idle_poll
            flush_in = idle_since + self._limits.idle_flush_s - now
            if not page.records and buffer.through is not None and 0 < flush_in < pause:
                # Idle, and the idle flush falls due before the next poll: poll when it is due
                # rather than a whole idle poll later. An empty answer lands the batch then (the
                # branch above); a record read keeps it open, as any record in the idle time does.
                pause = max(flush_in + TIMER_SLACK_S, min(MIN_POLL_GAP_S, pause))
            await self._pause(pause, stop)
        if not self.lost.is_set():
            await self._flush(buffer)
        return Shutdown.REQUESTED

    async def _pause(self, seconds: float, stop: asyncio.Event) -> None:
        """`sleep(seconds)` between two GetRecords calls, over at once when `stop` is set or
        the lease is lost: on a stop (SIGTERM on a deploy) the consumer lands its batch and
        checkpoints without first waiting out IDLE_POLL_S or a throttle's backoff (up to 5 s),
        and the worker's `reap` releases its lease. A retry of a call (`_call`) is not cut
        short: the final flush and checkpoint are made through it."""
        await sleep_unless(seconds, self._sleep, stop, self.lost)

    async def _take_page(
        self, buffer: _Buffer, records: Sequence[Record], position: str
    ) -> tuple[str, _Buffer]:
        """Route a page's records into `buffer`, landing and checkpointing it whenever a limit
        cuts it; returns the checkpoint and the buffer to go on with. A cut falls only between
        Kinesis records (an aggregate's sub-records share a sequence number and are never split
        across batches), so a checkpoint is always a whole Kinesis record."""
        route, reject, shard = self._router.route, self._router.reject, self.shard_id
        limits = self._limits
        max_records, max_bytes = limits.max_records, limits.max_bytes
        # When a limit cuts the batch, inline (this runs once per record); age as a deadline
        deadline = None if buffer.first_arrival is None else buffer.first_arrival + self._max_age
        count, size = buffer.count, buffer.size
        # Records of a page mostly go to one target: its list is kept at hand (no hashing).
        last_target: Target | None = None
        last_lines: list[Line] = []
        previous = None
        for record in records:
            sequence = record.sequence
            if (
                sequence != previous
                and count
                and (
                    count >= max_records
                    or size >= max_bytes
                    or (deadline is not None and record.arrival >= deadline)
                )
            ):
                buffer.count, buffer.size = count, size
                position = await self._flush(buffer) or position
                buffer = _Buffer()
                count = size = 0
                deadline, last_target = None, None
            previous = sequence
            if record.error is not None:
                target, line = reject(shard, record, record.error)
            else:
                target, line = route(shard, record)
            # Nothing landed past the checkpoint (the usual case): no line to skip.
            if not self._landed or int(sequence) > landed_through(self._landed, target):
                if target is not last_target:
                    last_target, last_lines = target, buffer.lines[target]
                last_lines.append(Line(sequence, record.arrival, line))
                count += 1
                size += len(line) + 1
                if deadline is None:
                    buffer.first_arrival = record.arrival
                    deadline = record.arrival + self._max_age
            # Whole once its last sub-record is in: a cut (between Kinesis records) sees that.
            buffer.through = sequence
        buffer.count, buffer.size = count, size
        return position, buffer

    async def _flush(self, buffer: _Buffer) -> str | None:
        """Land everything buffered, then checkpoint what it covers. Returns the checkpoint."""
        if buffer.through is None:
            return None
        if self.lost.is_set():
            raise LeaseLostError(self.shard_id)
        # Raw first; lines raw refuses for good land in their own quarantine chain after the
        # routed ones (every chain is written in sequence order).
        refused: dict[Target, list[Line]] = {}
        for zone in (Zone.RAW, Zone.QUARANTINE):
            for target in [t for t in buffer.lines if t.zone is zone]:
                await self._land(buffer, target, refused)
        for aside, lines in refused.items():
            await self._call(partial(self._refused.land, aside, lines, self._landed))
        if self._processing is not None:
            await self._process(buffer)
        await self._checkpoint(buffer.through)
        return buffer.through

    async def _land(
        self, buffer: _Buffer, target: Target, refused: dict[Target, list[Line]]
    ) -> None:
        lines = buffer.lines[target]
        try:
            await self._call(partial(self._lander.land, target, lines, self._landed))
        except PutRefusedError as exc:
            if target.zone is not Zone.RAW:
                raise  # quarantine itself refused: nothing left to divert to
            now = self._clock.monotonic()
            reason = self._refusals.refused(target.name, "raw write", exc, now)
            if reason is None:
                raise
            log.error(
                "raw write refused; records quarantined",
                extra={"shard": self.shard_id, "dataset": target.dataset, "error": str(exc)},
            )
            done = landed_through(self._landed, target)
            diverted = [
                Line(line.sequence, line.arrival, failure_line(line.line, reason)[1])
                for line in lines
                if line.position > done
            ]
            self._metrics.add("RecordsQuarantined", len(diverted), dataset=target.dataset)
            refused[Target(Zone.QUARANTINE, target.dataset)] = diverted
            buffer.lines[target] = [line for line in lines if line.position <= done]  # in raw

    async def _process(self, buffer: _Buffer) -> None:
        """The second prong: items derived from the landed raw records, durable before the
        checkpoint. Upserts by id, so lines an earlier attempt processed are simply redone.
        A record the processor fails on, or whose item cannot be stored, goes to quarantine
        with the reason; the rest of the batch goes on."""
        assert self._processing is not None
        processor, sink = self._processing
        raw = [line for t, lines in buffer.lines.items() if t.zone is Zone.RAW for line in lines]
        derived = await derive(processor, raw, self._executor, self._processor_timeout_s)
        if derived.timeouts:
            self._metrics.add("ProcessorTimeouts", derived.timeouts, shard=self.shard_id)
        items, failed = derived.items, derived.failed
        if items:
            pairs = list(items.values())
            try:
                refused = await self._call(partial(sink.put_items, [item for item, _ in pairs]))
                self._metrics.add("ItemsProcessed", len(pairs) - len(refused), shard=self.shard_id)
                failed += [
                    (pairs[i][1], f"item refused by the items table: {why}")
                    for i, why in refused.items()
                ]
            except PermanentError as exc:
                now = self._clock.monotonic()
                reason = self._refusals.refused("items", "items table", exc, now)
                if reason is None:
                    raise
                failed += [(line, reason) for _, line in items.values()]
        if failed:
            await self._land_failures(failed)

    async def _land_failures(self, failed: list[tuple[Line, str]]) -> None:
        by_target: dict[Target, list[Line]] = defaultdict(list)
        for line, reason in sorted(failed, key=lambda f: f[0].position):
            dataset, quarantined = failure_line(line.line, reason)
            by_target[Target(Zone.QUARANTINE, dataset)].append(
                Line(line.sequence, line.arrival, quarantined)
            )
        for target, lines in by_target.items():
            log.warning(
                "records failed processing; quarantined",
                extra={"shard": self.shard_id, "dataset": target.dataset, "count": len(lines)},
            )
            await self._call(partial(self._failures.land, target, lines, self._landed))
            self._metrics.add("ProcessingFailures", len(lines), dataset=target.dataset)

    async def _checkpoint(self, checkpoint: str) -> None:
        if checkpoint != Checkpoint.SHARD_END:
            at = int(checkpoint)
            self._landed = {k: v for k, v in self._landed.items() if int(v) > at}
        else:
            self._landed = {}
        landed = dict(self._landed)
        lease = self.lease
        updated = await self._call(lambda: self._store.checkpoint(lease, checkpoint, landed))
        if updated is None:
            self.lost.set()
            self._metrics.add("LeasesLost", 1, shard=self.shard_id)
            raise LeaseLostError(self.shard_id)
        # Only the checkpoint fields: the counter may have moved on meanwhile (renewals).
        self.lease = replace(
            self.lease, checkpoint=checkpoint, landed=dict(landed), owner_switches=0
        )
        self.checkpointed_at = self._clock.monotonic()
        self.strikes = 0
        self._refusals.clear()
        done = {
            s for s in self._empty if checkpoint == Checkpoint.SHARD_END or s <= int(checkpoint)
        }
        if done:
            self._empty -= done
            self._metrics.add("EmptyAggregates", len(done), shard=self.shard_id)
        self._metrics.add("Checkpoints", 1, shard=self.shard_id)

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await retry(
            operation,
            RetryPolicy(max_attempts=8, base_delay=0.1, max_delay=3.0),
            sleep=self._sleep,
            what=f"shard {self.shard_id}",
        )
