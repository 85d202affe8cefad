"""The optional second prong, throttling and expired iterators."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tests.stream.conftest import SIGNING_KEY, Harness, envelope
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.envelope import verify_envelope
from tributary.errors import ConfigError, PermanentError, TransientError
from tributary.raw_writer import RawObject, WriteOutcome
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_stream.aggregation import aggregate
from tributary_stream.consumer import Limits, ShardConsumer, Shutdown
from tributary_stream.lander import Lander
from tributary_stream.lease import Checkpoint, Lease
from tributary_stream.processing import body_length, load_processor
from tributary_stream.route import Router
from tributary_stream.stream import (
    MIN_POLL_GAP_S,
    KinesisStreamReader,
    MalformedResponseError,
    Page,
)
from tributary_stream.testing import MemoryItemSink, MemoryLeaseStore, MemoryStream

SHARD = "shardId-000000000000"


def post(i: int) -> bytes:
    return envelope("posts", str(i), {"userId": 1, "id": i, "title": "t", "body": "b" * i})


async def test_processed_items_are_durable_before_the_checkpoint(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(1))
    sink = MemoryItemSink()
    h.processing = (load_processor("tributary_stream.processing:body_length"), sink)
    expected = [post(i) for i in range(1, 40)]
    for data in expected:
        h.stream.put(SHARD, data)
    worker = h.start()
    await h.wait_for(lambda: len(sink.items) == 39 and sum(h.raw_lines().values()) == 39)
    await h.stop(worker)
    assert sink.items["posts#7"] == {"dataset": "posts", "id": "7", "body_length": 7}
    assert h.raw_lines() == Counter(verify_envelope(d, SIGNING_KEY) for d in expected)


def test_processor_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="not an importable 'module:function'"):
        load_processor("nowhere:nothing")
    assert body_length({"dataset": "d", "id": "1", "data": {"x": 1}}) is None


async def test_throttling_and_expired_iterators_lose_nothing(registry: DatasetRegistry) -> None:
    h = Harness(registry, MemoryStream(1))
    expected = [post(i) for i in range(1, 30)]
    for data in expected[:15]:
        h.stream.put(SHARD, data)
    h.stream.throttle_next(3)
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 15)
    h.stream.expire_iterators = True
    for data in expected[15:]:
        h.stream.put(SHARD, data)
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 29)
    await h.stop(worker)
    assert h.raw_lines() == Counter(verify_envelope(d, SIGNING_KEY) for d in expected)
    assert h.metrics.total("GetRecordsThrottled", shard=SHARD) == 3


def recorded_sleep_consumer(
    registry: DatasetRegistry, stream: MemoryStream, sleep: Any, writer: MemoryRawWriter
) -> ShardConsumer:
    """A consumer of `stream` from TRIM_HORIZON, IDLE_POLL_S 1, whose every pause is `sleep`;
    its lease is in its store, so its checkpoints are stored."""
    lease = Lease(SHARD, "w", 1, Checkpoint.TRIM_HORIZON, token="t")
    store = MemoryLeaseStore()
    store.leases[SHARD] = lease
    return ShardConsumer(
        lease,
        store,
        stream,
        Router(registry, "kinesis:test", "events", signing_key=SIGNING_KEY),
        Lander(writer, SHARD, MemoryMetrics()),
        Limits(10, 1_000_000, 60, 1),
        SystemClock(),
        MemoryMetrics(),
        idle_poll_s=1.0,
        sleep=sleep,
    )


async def test_a_throttled_or_expired_read_is_retried_no_sooner_than_the_least_poll_gap(
    registry: DatasetRegistry,
) -> None:
    """Kinesis allows 5 GetRecords a second a shard, refused calls included: after a throttle
    (full-jitter backoff, which can draw almost 0) and after an expired iterator (a fresh one
    is asked for at once) the next GetRecords waits at least MIN_POLL_GAP_S (0.2 s). The
    throttle's jitter is kept on top of it (readers throttled together spread out), and the
    record read after them all lands."""
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    stream.throttle_next(5)
    stream.expire_iterators = True  # after the throttles, the first call finds it expired
    stop = asyncio.Event()
    pauses: list[float] = []
    calls_at_pause: list[int] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        calls_at_pause.append(stream.calls)
        if len(pauses) == 7:
            stop.set()
        await asyncio.sleep(0)

    writer = MemoryRawWriter()
    consumer = recorded_sleep_consumer(registry, stream, sleep, writer)
    await asyncio.wait_for(consumer.run(stop), 10)
    # a pause after each of the 5 throttled calls and after the expired one, then the read
    assert calls_at_pause[:6] == [1, 2, 3, 4, 5, 6]
    assert min(pauses[:6]) >= MIN_POLL_GAP_S
    assert all(p > MIN_POLL_GAP_S for p in pauses[:5])  # the jitter on top of the least gap
    assert await landed_batches(writer) == [["1"]]  # the record read after them all landed


@pytest.mark.parametrize("ending", ["stop", "lease lost"])
@pytest.mark.parametrize("wait", ["idle poll", "throttle backoff", "expired iterator"])
async def test_a_stop_or_a_lost_lease_ends_the_wait_for_the_next_poll_at_once(
    registry: DatasetRegistry, wait: str, ending: str
) -> None:
    """A stop (SIGTERM on a deploy) or the lease lost, set while the consumer waits for its
    next GetRecords call, ends the wait: on a stop the consumer lands what it read and returns,
    rather than first sleeping out IDLE_POLL_S, a throttle's backoff (up to 5 s) or the least
    gap after an expired iterator. The sleep here never ends by itself; so a consumer that
    waits it out never returns."""
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    if wait == "throttle backoff":
        stream.throttle_next(1)
    elif wait == "expired iterator":
        stream.expire_iterators = True
    stop, paused = asyncio.Event(), asyncio.Event()
    paused_after: list[int] = []

    async def sleep(seconds: float) -> None:
        paused_after.append(stream.calls)
        paused.set()
        await asyncio.Event().wait()

    writer = MemoryRawWriter()
    consumer = recorded_sleep_consumer(registry, stream, sleep, writer)
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.wait_for(paused.wait(), 10)
    assert paused_after == [1]  # the wait after the first GetRecords call, whatever it answered
    if ending == "stop":
        stop.set()
        assert await asyncio.wait_for(task, 10) is Shutdown.REQUESTED
        # the idle poll's pause came after the record was read; a refused call read nothing
        assert await landed_batches(writer) == ([["1"]] if wait == "idle poll" else [])
    else:
        consumer.lost.set()
        assert await asyncio.wait_for(task, 10) is Shutdown.LEASE_LOST
        assert await landed_batches(writer) == []  # a lost lease lands nothing more


async def test_endless_throttling_is_bounded_and_handed_to_supervision(
    registry: DatasetRegistry,
) -> None:
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    stream.throttle_next(10**6)
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    consumer = recorded_sleep_consumer(registry, stream, sleep, MemoryRawWriter())
    with pytest.raises(TransientError, match="throttled 30 times in a row"):
        await asyncio.wait_for(consumer.run(asyncio.Event()), 10)
    assert len(pauses) == 29
    assert max(pauses) <= 5  # capped backoff between attempts


class GarbledKinesis:
    """Answers GetRecords / ListShards with something that is not their response shape."""

    async def get_records(self, **_: Any) -> dict[str, Any]:
        return {"Records": [{"Data": b"x"}], "NextShardIterator": "it"}

    async def list_shards(self, **_: Any) -> dict[str, Any]:
        return {"Shards": [{"NoShardId": True}]}


async def test_a_malformed_kinesis_response_is_a_clear_permanent_error() -> None:
    reader = KinesisStreamReader(GarbledKinesis(), "stream")  # type: ignore[arg-type]
    with pytest.raises(MalformedResponseError, match="not a GetRecords response"):
        await reader.get_records("it", 10)
    with pytest.raises(MalformedResponseError, match="ListShards answered an unreadable page"):
        await reader.list_shards()


class AggregatingKinesis:
    """Answers GetRecords with one plain record and one KPL aggregate of three."""

    async def get_records(self, **_: Any) -> dict[str, Any]:
        at = datetime(2026, 1, 2, tzinfo=UTC)
        aggregated = aggregate([("pk", post(i)) for i in (2, 3, 4)])
        records = [("1", post(1)), ("2", aggregated)]
        return {
            "Records": [
                {
                    "SequenceNumber": sequence,
                    "PartitionKey": "pk",
                    "Data": data,
                    "ApproximateArrivalTimestamp": at,
                }
                for sequence, data in records
            ],
            "NextShardIterator": "it",
            "MillisBehindLatest": 0,
        }


async def test_the_kinesis_reader_counts_kinesis_records_beside_user_records() -> None:
    """GetRecords' Limit counts Kinesis records: the page says how many it held (2), not only
    the user records deaggregated from them (4); MemoryStream, the fake, says the same."""
    page = await KinesisStreamReader(AggregatingKinesis(), "stream").get_records("it", 2)  # type: ignore[arg-type]
    assert (len(page.records), page.kinesis_records) == (4, 2)
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    stream.put(SHARD, b"", aggregated=[post(2), post(3), post(4)])
    fake = await stream.get_records(f"{SHARD}@0", 2)
    assert (len(fake.records), fake.kinesis_records) == (4, 2)


async def test_a_rewound_lease_resumes_at_its_timestamp_after_an_expired_iterator(
    registry: DatasetRegistry,
) -> None:
    """A rewind leaves AT_TIMESTAMP and `checkpointTimestamp` on the lease; the first iterator
    expires before any record: the new one must start at that timestamp again (Kinesis refuses
    AT_TIMESTAMP without one, and so does MemoryStream)."""
    h = Harness(registry, MemoryStream(1))
    expected = [post(i) for i in range(1, 11)]
    for minute, data in enumerate(expected):
        h.stream.put(SHARD, data, arrival=datetime(2026, 11, 30, 10, minute, tzinfo=UTC))
    at = datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
    h.store.leases[SHARD] = Lease(SHARD, None, 0, Checkpoint.AT_TIMESTAMP, timestamp=at)
    h.stream.expire_iterators = True
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= 5)
    await asyncio.sleep(0.3)
    await h.stop(worker)
    assert h.raw_lines() == Counter(verify_envelope(d, SIGNING_KEY) for d in expected[5:])
    assert h.metrics.total("ShardFailures", shard=SHARD) == 0  # resumed, not crashed


async def test_the_memory_stream_refuses_at_timestamp_without_a_timestamp() -> None:
    with pytest.raises(PermanentError, match="Timestamp is required"):
        await MemoryStream(1).iterator(SHARD, Checkpoint.AT_TIMESTAMP, None)


def idle_flush_consumer(
    registry: DatasetRegistry,
    stream: MemoryStream,
    arrivals: dict[float, int],
    idle_flush_s: float = 1.5,
    early_s: float = 0.0,
    flush_when_caught_up: bool = False,
    get_records_limit: int = 10_000,
    reader: Any = None,
) -> tuple[ShardConsumer, asyncio.Event, MemoryRawWriter, MemoryLeaseStore, list[float]]:
    """A consumer on a FakeClock with IDLE_POLL_S 1 and `idle_flush_s`; each of `arrivals`
    (seconds → record number) is put on the stream during the first sleep that passes it, and
    each sleep wakes `early_s` early (as an asyncio timer may, by up to a clock tick). It stops
    at 8 s; the list it returns holds the time of each landing."""
    clock = FakeClock()
    start = clock.monotonic()
    stop = asyncio.Event()
    landed_at: list[float] = []
    pending = dict(arrivals)

    class TimedWriter(MemoryRawWriter):
        async def put(self, obj: RawObject) -> WriteOutcome:
            landed_at.append(clock.monotonic() - start)
            return await super().put(obj)

    async def sleep(seconds: float) -> None:
        for at in [at for at in pending if at <= clock.monotonic() - start + seconds]:
            stream.put(SHARD, post(pending.pop(at)))
        clock.advance(seconds - early_s)
        if clock.monotonic() - start >= 8:
            stop.set()
        await asyncio.sleep(0)

    writer = TimedWriter()
    store = MemoryLeaseStore()
    lease = Lease(SHARD, "w", 1, Checkpoint.TRIM_HORIZON, token="t")
    store.leases[SHARD] = lease
    consumer = ShardConsumer(
        lease,
        store,
        stream if reader is None else reader,
        Router(registry, "kinesis:test", "events", signing_key=SIGNING_KEY),
        Lander(writer, SHARD, MemoryMetrics()),
        Limits(10, 1_000_000, 60, idle_flush_s, flush_when_caught_up),
        clock,
        MemoryMetrics(),
        get_records_limit=get_records_limit,
        idle_poll_s=1.0,
        sleep=sleep,
    )
    return consumer, stop, writer, store, landed_at


async def landed_batches(writer: MemoryRawWriter) -> list[list[str]]:
    return [
        [orjson.loads(line)["id"] for line in gzip.decompress(await writer.get(key)).splitlines()]
        for key in sorted(await writer.keys("raw/"))
    ]


async def test_an_idle_batch_lands_when_its_idle_flush_is_due_not_a_poll_later(
    registry: DatasetRegistry,
) -> None:
    """IDLE_POLL_S 1, IDLE_FLUSH_S 1.5: the empty poll at 1 s finds the batch not yet due, so
    the next poll comes when it is (1.5 s), not at 2 s; that empty answer lands it. The checkpoint
    ends at the last record."""
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    consumer, stop, writer, store, landed_at = idle_flush_consumer(registry, stream, {2.2: 2})
    assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
    # record 2 arrives at 2.2 s, is read at the 2.5 s poll, its idle flush is due at 4.0 s
    assert landed_at == pytest.approx([1.5, 4.0], abs=0.01)
    assert await landed_batches(writer) == [["1"], ["2"]]
    assert store.leases[SHARD].checkpoint == stream.shards[SHARD][-1].sequence


async def test_a_record_arriving_before_the_idle_flush_is_due_keeps_the_batch_open(
    registry: DatasetRegistry,
) -> None:
    """Record 2 arrives at 1.2 s, after the empty poll at 1 s and before record 1's idle flush
    is due (1.5 s): the poll made then reads it, so the shard was not idle and both land as one
    batch once it is (1.5 s after 1.5 s)."""
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    consumer, stop, writer, store, landed_at = idle_flush_consumer(registry, stream, {1.2: 2})
    assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
    assert landed_at == pytest.approx([3.0], abs=0.01)
    assert await landed_batches(writer) == [["1", "2"]]
    assert store.leases[SHARD].checkpoint == stream.shards[SHARD][-1].sequence


async def test_an_idle_batch_due_soon_after_a_poll_waits_for_the_least_poll_gap(
    registry: DatasetRegistry,
) -> None:
    """IDLE_FLUSH_S 1.1: at the empty poll at 1 s the flush is due in 0.1 s, but a shard is
    polled at most 5 times a second, so the poll that lands the batch comes at 1.2 s."""
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    consumer, stop, writer, _, landed_at = idle_flush_consumer(registry, stream, {}, 1.1)
    assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
    assert landed_at == pytest.approx([1.2], abs=0.001)
    assert await landed_batches(writer) == [["1"]]


async def test_an_idle_batch_lands_when_due_though_the_timer_wakes_a_little_early(
    registry: DatasetRegistry,
) -> None:
    """Each sleep wakes 0.1 ms early: the poll aimed at the idle flush's deadline still comes
    after it and lands the batch, rather than finding it 0.1 ms short and waiting a whole
    IDLE_POLL_S more."""
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    consumer, stop, writer, _, landed_at = idle_flush_consumer(registry, stream, {}, early_s=0.0001)
    assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
    assert landed_at == pytest.approx([1.5], abs=0.01)
    assert await landed_batches(writer) == [["1"]]


async def test_flush_when_caught_up_lands_a_batch_on_the_page_that_finds_the_shard_caught_up(
    registry: DatasetRegistry,
) -> None:
    """FLUSH_WHEN_CAUGHT_UP: the first poll reads records 1-3 in pages of 2; the first page is
    full and leaves one behind, so nothing lands; the second is short and 0 ms behind, so the
    batch lands then (0.2 s), not after IDLE_FLUSH_S of quiet. Record 4, read at the 1.2 s
    poll, lands at once too. Off (the default), the same reads keep one batch open until a
    poll finds the shard idle for IDLE_FLUSH_S (1 s after record 4 was read)."""
    landings = {}
    for on in (True, False):
        stream = MemoryStream(1)
        for number in (1, 2, 3):
            stream.put(SHARD, post(number))
        consumer, stop, writer, store, landed_at = idle_flush_consumer(
            registry, stream, {1.1: 4}, 1.0, flush_when_caught_up=on, get_records_limit=2
        )
        assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
        landings[on] = landed_at, await landed_batches(writer)
        assert store.leases[SHARD].checkpoint == stream.shards[SHARD][-1].sequence
    assert landings[True][0] == pytest.approx([0.2, 1.2], abs=0.01)
    assert landings[True][1] == [["1", "2", "3"], ["4"]]
    assert landings[False][0] == pytest.approx([2.2], abs=0.01)
    assert landings[False][1] == [["1", "2", "3", "4"]]


async def test_flush_when_caught_up_keeps_a_full_page_open_and_lands_it_on_the_empty_next(
    registry: DatasetRegistry,
) -> None:
    """A full page means more is waiting whatever MillisBehindLatest says (moto may say 0: it
    measures from the records' creation times, equal for a quick fill): two records read with
    GetRecords limit 2 that reach the end of the shard are not landed at once; the next page,
    0.2 s later (the least gap, as behind), is empty and caught up, and lands them then, not
    after IDLE_FLUSH_S (1 s) of quiet."""
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    stream.put(SHARD, post(2))
    consumer, stop, writer, _, landed_at = idle_flush_consumer(
        registry, stream, {}, 1.0, flush_when_caught_up=True, get_records_limit=2
    )
    assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
    assert landed_at == pytest.approx([0.2], abs=0.01)
    assert await landed_batches(writer) == [["1", "2"]]


class BehindOnce:
    """The stream, but its first answer says the shard is 5 s behind though the page is short
    (as Kinesis may: a page is cut by size and time, not only by the limit)."""

    def __init__(self, stream: MemoryStream) -> None:
        self.stream, self.answers = stream, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    async def get_records(self, iterator: str, limit: int) -> Page:
        page = await self.stream.get_records(iterator, limit)
        self.answers += 1
        return dataclasses.replace(page, millis_behind=5_000) if self.answers == 1 else page


async def test_flush_when_caught_up_keeps_a_short_page_open_while_the_shard_is_behind(
    registry: DatasetRegistry,
) -> None:
    """The first page is short (one record of GetRecords limit 10,000) but says 5 s behind:
    not caught up, so nothing lands; the next poll, 0.2 s later (behind: the least gap), reads
    record 2 and is caught up, and both land then as one batch."""
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    consumer, stop, writer, store, landed_at = idle_flush_consumer(
        registry, stream, {0.1: 2}, 1.0, flush_when_caught_up=True, reader=BehindOnce(stream)
    )
    assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
    assert landed_at == pytest.approx([0.2], abs=0.01)
    assert await landed_batches(writer) == [["1", "2"]]
    assert store.leases[SHARD].checkpoint == stream.shards[SHARD][-1].sequence


async def test_flush_when_caught_up_counts_kinesis_records_not_the_records_of_an_aggregate(
    registry: DatasetRegistry,
) -> None:
    """GetRecords' limit counts Kinesis records: one KPL aggregate of three records read with
    limit 2 is a short page (1 of 2), 0 ms behind, so it lands at once rather than being taken
    for a full page (3 user records) and left to the idle flush."""
    stream = MemoryStream(1)
    stream.put(SHARD, b"", aggregated=[post(1), post(2), post(3)])
    consumer, stop, writer, _, landed_at = idle_flush_consumer(
        registry, stream, {}, 1.0, flush_when_caught_up=True, get_records_limit=2
    )
    assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
    assert landed_at == pytest.approx([0.0], abs=0.01)
    assert await landed_batches(writer) == [["1", "2", "3"]]


async def test_a_full_page_of_empty_aggregates_is_read_past_at_the_least_poll_gap(
    registry: DatasetRegistry,
) -> None:
    """Two empty KPL aggregates fill a page of GetRecords limit 2 (no user record in it, one
    Kinesis record still behind): more is waiting, so the next poll comes 0.2 s later, not a
    whole IDLE_POLL_S (1 s); it reads record 1, which lands once the shard has been idle
    IDLE_FLUSH_S (1 s) after it."""
    stream = MemoryStream(1)
    stream.put(SHARD, b"", aggregated=[])
    stream.put(SHARD, b"", aggregated=[])
    stream.put(SHARD, post(1))
    consumer, stop, writer, _, landed_at = idle_flush_consumer(
        registry, stream, {}, 1.0, get_records_limit=2
    )
    assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
    assert landed_at == pytest.approx([1.2], abs=0.01)
    assert await landed_batches(writer) == [["1"]]


class EmptyWhileBehind:
    """The stream, but its first answer is an empty page 5 s behind that does not move the
    iterator on, as Kinesis answers where the shard holds no records at the iterator: "it might
    take multiple calls to get to a portion of the shard that contains records" (GetRecords)."""

    def __init__(self, stream: MemoryStream) -> None:
        self.stream, self.answers = stream, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    async def get_records(self, iterator: str, limit: int) -> Page:
        self.answers += 1
        if self.answers == 1:
            return Page([], iterator, 5_000, None, kinesis_records=0)
        return await self.stream.get_records(iterator, limit)


async def test_an_empty_page_still_behind_is_read_past_at_the_least_poll_gap(
    registry: DatasetRegistry,
) -> None:
    """An empty page that says the shard is behind means records wait further on: the next poll
    comes 0.2 s later (the least gap), not a whole IDLE_POLL_S (1 s), and reads record 1, which
    lands once the shard has been idle IDLE_FLUSH_S (1 s) after it (at 1.2 s, not 2.0 s)."""
    stream = MemoryStream(1)
    stream.put(SHARD, post(1))
    reader = EmptyWhileBehind(stream)
    consumer, stop, writer, store, landed_at = idle_flush_consumer(
        registry, stream, {}, 1.0, reader=reader
    )
    assert await asyncio.wait_for(consumer.run(stop), 10) is Shutdown.REQUESTED
    assert landed_at == pytest.approx([1.2], abs=0.01)
    assert await landed_batches(writer) == [["1"]]
    assert store.leases[SHARD].checkpoint == stream.shards[SHARD][-1].sequence
