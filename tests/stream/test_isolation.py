"""No record, fault or slow dependency stops a shard or the worker: the real Worker on the
in-memory backends (each as strict as its service), with poison of every kind."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import threading
from typing import Any

import orjson
import pytest

from tests.stream.conftest import Harness, envelope, landed, without_arrival
from tributary.dataset import DatasetRegistry
from tributary.errors import TransientError
from tributary_stream.aggregation import aggregate
from tributary_stream.lease import Lease
from tributary_stream.processing import DynamoDbItemSink
from tributary_stream.testing import MemoryItemSink, MemoryLeaseStore, MemoryStream

SHARD = "shardId-000000000000"


def post(i: int, body: str = "b") -> bytes:
    return envelope("posts", str(i), {"userId": 1, "id": i, "title": "t", "body": body * i})


def at_end(h: Harness) -> bool:
    lease = h.store.leases.get(SHARD)
    return lease is not None and lease.checkpoint == h.stream.shards[SHARD][-1].sequence


def quarantined(h: Harness) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in h.raw_lines("quarantine")]


def explode_on_multiples_of_five(envelope: dict[str, Any]) -> dict[str, Any] | None:
    if envelope["data"]["id"] % 5 == 0:
        raise ValueError(f"no fives please ({envelope['id']})")
    return {"dataset": envelope["dataset"], "id": envelope["id"], "n": envelope["data"]["id"]}


def explode_always(envelope: dict[str, Any]) -> dict[str, Any] | None:
    raise KeyError("missing_field")


async def test_a_failing_processor_quarantines_its_records_and_the_shard_goes_on(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(1))
    sink = MemoryItemSink()
    h.processing = (explode_on_multiples_of_five, sink)
    expected = [post(i) for i in range(1, 41)]
    for data in expected:
        h.stream.put(SHARD, data)
    worker = h.start()
    await h.wait_for(lambda: len(sink.items) == 32 and len(quarantined(h)) == 8)
    more = [post(i) for i in range(41, 46)]
    for data in more:  # the shard keeps going after the failures
        h.stream.put(SHARD, data)
    await h.wait_for(lambda: len(sink.items) == 36 and len(quarantined(h)) == 9)
    await h.stop(worker)
    assert h.raw_lines() == landed(expected + more)  # raw lands everything, failures included
    failures = quarantined(h)
    assert sorted(int(f["id"]) for f in failures) == [5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert failures[0]["errors"][0]["message"] == (
        "STREAM_PROCESSOR raised ValueError: no fives please (5)"
    )
    first = without_arrival(base64.b64decode(failures[0]["data_base64"]))
    assert landed([first]) == landed([post(5)])  # the envelope as it landed
    assert h.metrics.total("ProcessingFailures", dataset="posts") == 9
    lease = h.store.leases[SHARD]
    assert lease.checkpoint == h.stream.shards[SHARD][-1].sequence


async def test_a_processor_failing_every_record_does_not_stop_raw(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(2))
    h.processing = (explode_always, MemoryItemSink())
    expected = [post(i) for i in range(1, 31)]
    for i, data in enumerate(expected):
        h.stream.put(f"shardId-00000000000{i % 2}", data)
    worker = h.start()
    await h.wait_for(lambda: len(quarantined(h)) == 30)
    await h.stop(worker)
    assert h.raw_lines() == landed(expected)
    assert {f["errors"][0]["message"] for f in quarantined(h)} == {
        "STREAM_PROCESSOR raised KeyError: 'missing_field'"
    }


@pytest.mark.parametrize("backend", ["memory", "dynamodb"])
async def test_a_retried_record_twice_in_one_batch_is_stored_once(
    registry: DatasetRegistry, backend: str, items_sink: DynamoDbItemSink
) -> None:
    """An API retry with the same Idempotency-Key puts the same id on the stream twice."""
    h = Harness(registry, MemoryStream(1))
    sink: Any = MemoryItemSink() if backend == "memory" else items_sink
    h.processing = (explode_on_multiples_of_five, sink)
    sent = [post(1), post(2), post(1), post(3), post(2, body="c")]  # the last one wins
    for data in sent:
        h.stream.put(SHARD, data)
    worker = h.start()
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    assert h.raw_lines() == landed(sent)
    assert not quarantined(h)
    assert h.metrics.total("ShardFailures", shard=SHARD) == 0
    if backend == "memory":
        assert sorted(sink.items) == ["posts#1", "posts#2", "posts#3"]


async def test_an_items_table_that_refuses_ends_in_quarantine_not_a_loop(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(1))
    sink = MemoryItemSink()
    sink.refuse = "AccessDeniedException"
    h.processing = (explode_on_multiples_of_five, sink)
    expected = [post(i) for i in range(1, 5)]
    for data in expected:
        h.stream.put(SHARD, data)
    worker = h.start()
    await h.wait_for(lambda: len(quarantined(h)) == 4)
    await h.stop(worker)
    assert h.raw_lines() == landed(expected)
    (reason,) = {f["errors"][0]["message"] for f in quarantined(h)}
    assert re.match(
        r"items table refused 3 times in \d+\.\d s: PermanentError: BatchWriteItem refused", reason
    )
    assert sink.puts == 3  # bounded: three attempts, with backoff between them
    assert h.metrics.total("ShardFailures", shard=SHARD) == 2


async def test_raw_refused_for_good_diverts_to_quarantine_and_the_shard_moves_on(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(1))
    h.writer.denied = {"raw/posts/"}  # a 403 on one dataset's prefix
    events = [envelope("events", f"e{i}", {"i": i}) for i in range(5)]
    posts = [post(i) for i in range(1, 6)]
    for e, p in zip(events, posts, strict=True):
        h.stream.put(SHARD, e)
        h.stream.put(SHARD, p)
    h.stream.put(SHARD, b"not json")  # ordinary poison in the same batch keeps its place
    worker = h.start()
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    assert h.raw_lines() == landed(events)
    diverted = [q for q in quarantined(h) if q["dataset"] == "posts"]
    diverted_lines = [without_arrival(base64.b64decode(q["data_base64"])) for q in diverted]
    assert landed(diverted_lines) == landed(posts)
    assert diverted[0]["errors"][0]["message"].startswith("raw write refused 3 times in ")
    assert h.metrics.total("RecordsQuarantined", dataset="posts") == 5
    assert h.metrics.total("ShardFailures", shard=SHARD) == 2


async def test_a_dead_lease_table_is_backed_off_and_logged_rarely_then_recovers(
    registry: DatasetRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(registry, MemoryStream(1))
    expected = [post(i) for i in range(1, 11)]
    for data in expected:
        h.stream.put(SHARD, data)
    h.store.fail_next(10**9)  # unreachable: nothing can be quarantined, so it must wait
    caplog.set_level(logging.WARNING, logger="tributary_stream")
    worker = h.start()
    await asyncio.sleep(2)
    failures = h.metrics.total("CoordinationFailures")
    h.store.fail_next(0)
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 10)
    await h.stop(worker)
    warnings = [r for r in caplog.records if r.getMessage().startswith("coordination cycle")]
    assert 1 <= len(warnings) <= 2  # loud once, then rate-limited (the metric counts each)
    assert 2 <= failures <= 15  # backoff (capped at 0.3 s here), not every 20 ms tick
    assert h.raw_lines() == landed(expected)


class LostReplyLeaseStore(MemoryLeaseStore):
    """A renewal that goes through but whose answer is lost (a timeout after the write)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_renewals = 0

    async def renew(self, lease: Lease) -> Lease | None:
        renewed = await super().renew(lease)
        if self.lose_renewals and renewed is not None:
            self.lose_renewals -= 1
            raise TransientError("renew timed out (fault injected after the write)")
        return renewed


async def test_a_lease_that_is_ours_but_unconsumed_is_restarted(
    registry: DatasetRegistry,
) -> None:
    """The worker thinks the lease lost (its next renewal is fenced by its own lost one), the
    table says it is ours: with one worker, nobody else will ever take it."""
    h = Harness(registry, MemoryStream(1), store=LostReplyLeaseStore())
    first = [post(i) for i in range(1, 6)]
    for data in first:
        h.stream.put(SHARD, data)
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 5)
    assert isinstance(h.store, LostReplyLeaseStore)
    h.store.lose_renewals = 1
    await h.wait_for(lambda: h.metrics.total("LeasesLost") >= 1)
    later = [post(i) for i in range(6, 11)]
    for data in later:
        h.stream.put(SHARD, data)
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 10)
    await h.stop(worker)
    assert h.raw_lines() == landed(first + later)
    assert h.metrics.total("LeasesRestarted") >= 1


async def test_damaged_aggregates_say_why_and_empty_ones_are_counted(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(1))
    good = aggregate([("k", post(i)) for i in range(1, 4)])
    wrong_md5 = good[:-1] + bytes([good[-1] ^ 0xFF])
    h.stream.put(SHARD, wrong_md5)
    truncated = good[:20]
    body = truncated[4:]
    h.stream.put(SHARD, truncated + hashlib.md5(body, usedforsecurity=False).digest())
    h.stream.put(SHARD, b"", aggregated=[])  # an aggregate of nothing
    h.stream.put(SHARD, good)
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 3 and len(quarantined(h)) == 2)
    await h.stop(worker)
    reasons = sorted(q["errors"][0]["message"] for q in quarantined(h))
    assert reasons[0] == "KPL aggregate: checksum mismatch (MD5 of the protobuf)"
    assert reasons[1].startswith("KPL aggregate: truncated or malformed protobuf")
    assert h.metrics.total("EmptyAggregates", shard=SHARD) == 1


def huge_on_sevens(envelope: dict[str, Any]) -> dict[str, Any] | None:
    n = envelope["data"]["id"]
    return {"dataset": "posts", "id": envelope["id"], "n": 2**130 if n % 7 == 0 else n}


@pytest.mark.parametrize("backend", ["memory", "dynamodb"])
async def test_an_item_with_a_number_dynamodb_cannot_store_is_quarantined_alone(
    registry: DatasetRegistry, backend: str, items_sink: DynamoDbItemSink
) -> None:
    h = Harness(registry, MemoryStream(1))
    sink: Any = MemoryItemSink() if backend == "memory" else items_sink
    h.processing = (huge_on_sevens, sink)
    sent = [post(i) for i in range(1, 31)]
    for data in sent:
        h.stream.put(SHARD, data)
    worker = h.start()
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    assert h.raw_lines() == landed(sent)
    assert sorted(int(f["id"]) for f in quarantined(h)) == [7, 14, 21, 28]
    assert "more than 38 significant digits" in quarantined(h)[0]["errors"][0]["message"]
    assert h.metrics.total("ItemsProcessed", shard=SHARD) == 26
    assert h.metrics.total("ShardFailures", shard=SHARD) == 0


async def test_a_hanging_processor_costs_its_record_not_the_lease(
    registry: DatasetRegistry,
) -> None:
    """The processor blocks (a sync call with no timeout) on one record: the event loop goes on
    (renewals), the record is quarantined as timed out, the rest is processed."""
    release = threading.Event()

    def hang_on_three(envelope: dict[str, Any]) -> dict[str, Any] | None:
        if envelope["data"]["id"] == 3:
            release.wait(10)
        return {"dataset": "posts", "id": envelope["id"], "n": envelope["data"]["id"]}

    h = Harness(registry, MemoryStream(1), config={"processor_timeout_s": 0.5})
    sink = MemoryItemSink()
    h.processing = (hang_on_three, sink)
    sent = [post(i) for i in range(1, 6)]
    for data in sent:
        h.stream.put(SHARD, data)
    worker = h.start()
    try:
        await h.wait_for(
            lambda: SHARD in h.store.leases and h.store.leases[SHARD].owner is not None
        )
        counter = h.store.leases[SHARD].counter
        await h.wait_for(lambda: at_end(h))
        assert h.store.leases[SHARD].counter > counter  # renewed while the processor hung
        await h.stop(worker)
    finally:
        release.set()
    assert h.raw_lines() == landed(sent)
    ((failure),) = quarantined(h)
    assert failure["id"] == "3"
    assert failure["errors"][0]["message"] == "STREAM_PROCESSOR timed out after 0.5 s"
    assert sorted(sink.items) == ["posts#1", "posts#2", "posts#4", "posts#5"]
    assert h.metrics.total("ProcessorTimeouts", shard=SHARD) == 1
    assert h.metrics.total("LeasesLost") == 0
