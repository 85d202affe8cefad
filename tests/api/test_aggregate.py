"""KPL aggregation in the API's Kinesis sink: aggregates the stream consumer de-aggregates, one
shard per aggregate, request order kept per shard through partial failures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.test_sink import SIGNING_KEY, FakeKinesis, no_sleep
from tributary.envelope import verify_envelope
from tributary.retry import RetryPolicy
from tributary.testing import MemoryMetrics
from tributary_api.aggregate import (
    MAGIC,
    ShardMap,
    aggregate_by_shard,
    encode_aggregate,
    hash_key,
)
from tributary_api.sink import Delivery, KinesisSink, OutRecord
from tributary_stream.aggregation import deaggregate

SPACE = 2**128


def even_ranges(n: int) -> list[tuple[str, int, int]]:
    """`n` shards splitting the hash space evenly, as CreateStream makes them."""
    step = SPACE // n
    return [
        (f"shardId-{i:012d}", i * step, SPACE - 1 if i == n - 1 else (i + 1) * step - 1)
        for i in range(n)
    ]


def test_an_aggregate_is_what_the_consumer_reads() -> None:
    pairs = [("a", b"1"), ("b", b"22"), ("a", b"333"), ("\u00e9", b"")]
    data = encode_aggregate(pairs)
    assert data.startswith(MAGIC)
    assert deaggregate(data, "outer").records == pairs
    assert deaggregate(data, "outer").error is None


RECORDS = st.lists(
    st.tuples(
        st.sampled_from(["k1", "k2", "k3", "key-é", "x" * 256, "7"]),
        st.integers(0, 3000) | st.just(9000),
    ),
    min_size=1,
    max_size=120,
)


@given(RECORDS, st.integers(1, 5), st.integers(1024, 8192))
@settings(max_examples=300, deadline=None)
def test_records_are_grouped_by_shard_in_order_within_the_size(
    spec: list[tuple[str, int]], shards: int, max_bytes: int
) -> None:
    records = [
        OutRecord(str(i), key, b"{" + b"x" * size + b"}") for i, (key, size) in enumerate(spec)
    ]
    shard_map = ShardMap.of(even_ranges(shards))
    ranges = even_ranges(shards)
    queues = aggregate_by_shard(records, shard_map, max_bytes)
    seen: list[OutRecord] = []
    for queue in queues:
        shard = shard_map.shard_of(hash_key(queue[0].records[0].partition_key))
        mine = [r for r in records if shard_map.shard_of(hash_key(r.partition_key)) == shard]
        inside: list[OutRecord] = []
        for entry in queue:
            if entry.explicit_hash_key is None:  # too large for an aggregate: sent as it is
                (alone,) = entry.records
                assert entry.data == alone.line
                assert entry.partition_key == alone.partition_key
                assert len(alone.line) + 2 * len(alone.partition_key.encode()) + 64 > max_bytes
            else:
                assert entry.weight <= max_bytes
                # ExplicitHashKey: the first key's hash, inside this shard's range
                _, low, high = ranges[shard]
                assert low <= int(entry.explicit_hash_key) <= high
                assert entry.partition_key == entry.records[0].partition_key
                read = deaggregate(entry.data, entry.partition_key)
                assert read.error is None
                assert read.records == [(r.partition_key, r.line) for r in entry.records]
            inside += entry.records
        assert inside == mine  # every record of the shard, in request order
        seen += inside
    assert sorted(seen, key=lambda r: int(r.id)) == records  # each exactly once


class ShardedFakeKinesis(FakeKinesis):
    """FakeKinesis with ListShards (two pages, one closed shard) and each entry's shard."""

    def __init__(self, fail_plan: list[set[int]] | None = None) -> None:
        super().__init__(fail_plan)
        self.ranges = even_ranges(3)
        self.entries: list[dict[str, Any]] = []
        self.list_calls = 0

    async def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        self.list_calls += 1
        shards = [
            {
                "ShardId": sid,
                "HashKeyRange": {"StartingHashKey": str(lo), "EndingHashKey": str(hi)},
                "SequenceNumberRange": {"StartingSequenceNumber": "1"},
            }
            for sid, lo, hi in self.ranges
        ]
        closed = {
            "ShardId": "shardId-closed",
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(SPACE - 1)},
            "SequenceNumberRange": {"StartingSequenceNumber": "0", "EndingSequenceNumber": "9"},
        }
        if "NextToken" not in kwargs:
            return {"Shards": [closed, *shards[:1]], "NextToken": "page-2"}
        return {"Shards": shards[1:]}

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        fail = self.fail_plan[0] if self.fail_plan else set()
        self.entries += [e for i, e in enumerate(Records) if i not in fail]
        return await super().put_records(StreamName, Records)


def shard_index(ranges: list[tuple[str, int, int]], hashed: int) -> int:
    return next(i for i, (_, lo, hi) in enumerate(ranges) if lo <= hashed <= hi)


async def test_the_sink_keeps_each_shard_s_order_through_partial_failures() -> None:
    kinesis = ShardedFakeKinesis([{0}, set(), {1}])
    sink = KinesisSink(
        kinesis,  # type: ignore[arg-type]
        "s",
        MemoryMetrics(),
        SIGNING_KEY,
        RetryPolicy(max_attempts=5),
        no_sleep,
        aggregate_max_bytes=1024,
    )
    keys = [f"user-{i % 7}" for i in range(300)]
    records = [
        OutRecord(str(i), key, sink.seal(b'{"i":%d,"pad":"%s"}' % (i, b"p" * 40)))
        for i, key in enumerate(keys)
    ]
    await sink.deliver(Delivery("posts", "b1", datetime(2026, 1, 1, tzinfo=UTC), records))
    assert kinesis.list_calls == 2  # its two pages, once; the closed shard left out
    # at most one entry per shard in a call: a shard's next aggregate waits for the one before
    for call in kinesis.calls:
        assert len(call) <= 3
    per_shard: dict[int, list[int]] = {}
    total = 0
    for entry in kinesis.entries:
        shard = shard_index(kinesis.ranges, int(entry["ExplicitHashKey"]))
        read = deaggregate(entry["Data"], entry["PartitionKey"])
        assert read.error is None
        for key, data in read.records:
            assert shard_index(kinesis.ranges, hash_key(key)) == shard
            line = verify_envelope(data, SIGNING_KEY)
            assert line is not None
            per_shard.setdefault(shard, []).append(int(line.split(b",")[0][5:]))
            total += 1
    assert total == 300  # each once
    for shard, ids in per_shard.items():
        expected = [
            i for i, k in enumerate(keys) if shard_index(kinesis.ranges, hash_key(k)) == shard
        ]
        assert ids == expected, shard
    assert len(kinesis.entries) < 300 / 5


async def test_the_shard_map_is_read_again_after_its_ttl() -> None:
    now = [0.0]
    kinesis = ShardedFakeKinesis()
    sink = KinesisSink(
        kinesis,  # type: ignore[arg-type]
        "s",
        MemoryMetrics(),
        SIGNING_KEY,
        aggregate_max_bytes=4096,
        shard_map_ttl_s=60,
        monotonic=lambda: now[0],
    )
    one = [OutRecord("1", "k", sink.seal(b'{"i":1}'))]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    await sink.deliver(Delivery("posts", "b1", at, one))
    await sink.deliver(Delivery("posts", "b2", at, one))
    assert kinesis.list_calls == 2  # two pages, once
    now[0] = 61.0
    await sink.deliver(Delivery("posts", "b3", at, one))
    assert kinesis.list_calls == 4
