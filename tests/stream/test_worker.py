"""The real worker and shard consumers on in-memory backends."""

from __future__ import annotations

import asyncio
import gzip
import random
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from tests.stream.conftest import SIGNING_KEY, Harness, envelope
from tributary.dataset import DatasetRegistry
from tributary.envelope import verify_envelope
from tributary_stream.testing import MemoryStream


def fill(stream: MemoryStream, per_shard: int, start: int = 0) -> list[bytes]:
    """Envelopes for posts and events, spread over every open shard."""
    lines = []
    for shard in [s for s in stream.shards if s not in stream.children]:
        for i in range(start, start + per_shard):
            data = envelope("posts" if i % 3 else "events", f"{shard}-{i}", {"i": i})
            stream.put(shard, data, partition_key=f"k{i % 7}")
            lines.append(verify_envelope(data, SIGNING_KEY))  # raw holds it unsigned
    return lines


async def test_one_worker_lands_every_record_once(registry: DatasetRegistry) -> None:
    h = Harness(registry, MemoryStream(3))
    expected = fill(h.stream, 200)
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected))
    await h.stop(worker)
    assert h.raw_lines() == Counter(expected)
    for lease in h.store.leases.values():  # checkpointed to the last record, then released
        assert lease.checkpoint == h.stream.shards[lease.key][-1].sequence
        assert lease.owner is None
    key = next(iter(h.writer.objects))
    assert key.startswith("raw/events/year=2026/month=01/day=02/hour=03/shardId-000000000000-")


async def test_bare_records_poison_and_kpl_aggregates(registry: DatasetRegistry) -> None:
    h = Harness(registry, MemoryStream(1))
    shard = "shardId-000000000000"
    h.stream.put(shard, b"not json at all")
    h.stream.put(shard, orjson.dumps({"type": "click"}))  # bare: default dataset 'events'
    h.stream.put(shard, envelope("nope", "x", {}))  # unknown dataset
    h.stream.put(
        shard,
        b"",
        partition_key="agg",
        aggregated=[envelope("posts", f"a{i}", {"i": i}) for i in range(5)],
    )
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= 6)
    await h.stop(worker)
    raw = [orjson.loads(line) for line in h.raw_lines()]
    assert sorted(r["id"] for r in raw if r["dataset"] == "posts") == [f"a{i}" for i in range(5)]
    (bare,) = [r for r in raw if r["dataset"] == "events"]
    assert bare["id"] == f"{shard}-{h.stream.shards[shard][1].sequence}"
    assert bare["data"] == {"type": "click"}
    poison = [orjson.loads(line) for line in h.raw_lines("quarantine")]
    assert sorted(p["errors"][0]["message"].split(":")[0] for p in poison) == [
        "envelope names unknown dataset 'nope'",
        "not JSON",
    ]


async def test_a_cut_never_splits_an_aggregate(registry: DatasetRegistry) -> None:
    """max_records 3: two records, then a 5-record aggregate (one Kinesis record), then two
    more. The cut falls before the record after the aggregate, never inside it: one object
    holds the whole aggregate and ends at its sequence, the checkpoint a flush writes."""
    h = Harness(registry, MemoryStream(1), max_records=3)
    shard = "shardId-000000000000"
    h.stream.put(shard, envelope("posts", "s1", {"i": 1}))
    h.stream.put(shard, envelope("posts", "s2", {"i": 2}))
    parts = [envelope("posts", f"a{i}", {"i": i}) for i in range(5)]
    agg = h.stream.put(shard, b"", partition_key="agg", aggregated=parts)
    h.stream.put(shard, envelope("posts", "s3", {"i": 3}))
    last = h.stream.put(shard, envelope("posts", "s4", {"i": 4}))
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= 9)
    await h.stop(worker)
    ids = {
        key: [orjson.loads(line)["id"] for line in gzip.decompress(o.body).splitlines()]
        for key, o in h.writer.objects.items()
    }
    (holding,) = [k for k, v in ids.items() if "a0" in v]
    assert ids[holding] == ["s1", "s2", "a0", "a1", "a2", "a3", "a4"]
    assert h.writer.objects[holding].last == agg
    assert sorted(i for v in ids.values() for i in v if i.startswith("a")) == [
        f"a{i}" for i in range(5)
    ]
    assert h.store.leases[shard].checkpoint == last


@pytest.mark.parametrize(("max_age_s", "objects"), [(1, 5), (3600, 1)])
async def test_batches_are_cut_by_age(
    registry: DatasetRegistry, max_age_s: float, objects: int
) -> None:
    """Records arriving 2 s apart (one page): with max_age 1 s each record starts a new batch;
    with an hour they share one."""
    h = Harness(registry, MemoryStream(1), max_age_s=max_age_s)
    shard = "shardId-000000000000"
    for i in range(5):
        at = datetime(2026, 1, 2, 3, 4, 2 * i, tzinfo=UTC)
        h.stream.put(shard, envelope("posts", f"p{i}", {"i": i}), arrival=at)
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= 5)
    await h.stop(worker)
    assert len(h.writer.objects) == objects
    assert sum(o.record_count for o in h.writer.objects.values()) == 5


async def test_parents_are_finished_before_children(registry: DatasetRegistry) -> None:
    h = Harness(registry, MemoryStream(1))
    parent = "shardId-000000000000"
    expected = fill(h.stream, 60)
    h.stream.close(parent, ["shardId-000000000001", "shardId-000000000002"], [parent])
    expected += fill(h.stream, 40, start=60)
    h.stream.close(
        "shardId-000000000001",
        ["shardId-000000000003"],
        ["shardId-000000000001", "shardId-000000000002"],
    )
    h.stream.close(
        "shardId-000000000002",
        ["shardId-000000000003"],
        ["shardId-000000000001", "shardId-000000000002"],
    )  # a merge: two parents
    expected += fill(h.stream, 30, start=100)
    workers = [h.start(), h.start()]
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected))
    # The finished parents' leases are deleted once their children started (by the leader;
    # ListShards still lists the parents and no lease is created for them again).
    await h.wait_for(lambda: set(h.store.leases) == {"shardId-000000000003"}, within=5)
    for w in workers:
        await h.stop(w)
    assert h.raw_lines() == Counter(expected)
    order = [key.rsplit("/", 1)[1].split("-")[1] for key in h.writer.objects]  # write order
    first = {s: order.index(s.split("-")[1]) for s in h.stream.shards}
    last = {s: len(order) - 1 - order[::-1].index(s.split("-")[1]) for s in h.stream.shards}
    assert last["shardId-000000000000"] < first["shardId-000000000001"]
    assert last["shardId-000000000000"] < first["shardId-000000000002"]
    assert (
        max(last["shardId-000000000001"], last["shardId-000000000002"])
        < first["shardId-000000000003"]
    )
    assert set(h.store.leases) == {"shardId-000000000003"}
    assert h.store.leases["shardId-000000000003"].checkpoint.isdigit()
    # Within a shard, objects are written in sequence order; with parents finished before
    # children (above), a partition key's records keep their order across a reshard.
    per_shard: dict[str, list[int]] = {}
    for key, obj in h.writer.objects.items():
        shard = "shardId-" + key.rsplit("/", 1)[1].split("-")[1]
        per_shard.setdefault(shard, []).append(int(obj.first))
    assert all(v == sorted(v) for v in per_shard.values())


async def test_graceful_stop_hands_leases_over_at_once(registry: DatasetRegistry) -> None:
    h = Harness(registry, MemoryStream(2))
    expected = fill(h.stream, 50)
    first = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected))
    await h.stop(first)
    # Released, not left to expire: the next worker needs no failover wait (asserted on the
    # leases, not on a clock a loaded machine stretches).
    assert h.store.leases
    assert all(lease.owner is None for lease in h.store.leases.values())
    expected += fill(h.stream, 50, start=50)
    second = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected))
    await h.stop(second)
    assert h.raw_lines() == Counter(expected)


@pytest.mark.parametrize(
    ("assignment", "metric"), [("scan", "LeasesStolen"), ("leader", "LeasesHandedOff")]
)
async def test_workers_balance_by_stealing(
    registry: DatasetRegistry, assignment: str, metric: str
) -> None:
    """KCL 2.x: the new worker steals; KCL 3.x: the leader has leases handed over."""
    h = Harness(registry, MemoryStream(4), config={"assignment": assignment})
    expected = fill(h.stream, 30)
    a = h.start("a")
    await h.wait_for(lambda: len(a.running) == 4)
    b = h.start("b")
    await h.wait_for(lambda: len(a.running) == 2 and len(b.running) == 2, within=15)
    expected += fill(h.stream, 30, start=30)
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected))
    await h.stop_all()
    assert h.raw_lines() == Counter(expected)
    assert h.metrics.total(metric) >= 2


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_crashes_and_faults_anywhere_land_each_record_once(
    registry: DatasetRegistry, seed: int
) -> None:
    rng = random.Random(seed)
    h = Harness(registry, MemoryStream(3), max_records=rng.choice([7, 20, 50]))
    expected = fill(h.stream, 150)
    for round_ in range(6):
        worker = h.start()
        if round_ % 2:
            h.writer.fail_next(rng.randint(1, 3))
        else:
            h.store.fail_next(rng.randint(1, 3))
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        expected += fill(h.stream, 20, start=1000 + round_ * 20)
        await h.kill(worker)  # no drain: whatever was buffered is lost, leases stay owned
    final = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=30)
    await h.stop(final)
    assert h.raw_lines() == Counter(expected)


async def test_a_graceful_stop_releases_without_sleeping_out_the_idle_poll(
    registry: DatasetRegistry,
) -> None:
    """SIGTERM on a deploy: the worker's drain stops each consumer where it waits for its next
    GetRecords call, so what it read lands, is checkpointed and its lease released at once.
    IDLE_POLL_S is an hour here (after a page of records the next poll is an hour away, so the
    batch is still unlanded) and the drain timeout an hour: a consumer that sleeps out its poll
    never lets the stop finish within the harness's 10 s."""
    h = Harness(registry, MemoryStream(2), config={"idle_poll_s": 3600, "shutdown_timeout_s": 3600})
    expected = fill(h.stream, 3)
    worker = h.start()
    await h.wait_for(lambda: h.stream.calls >= len(h.stream.shards))  # each shard's page read
    assert not h.raw_lines()  # nothing landed yet: the batches wait for the next poll
    await h.stop(worker)
    assert h.raw_lines() == Counter(expected)
    for lease in h.store.leases.values():
        assert lease.checkpoint == h.stream.shards[lease.key][-1].sequence
        assert lease.owner is None
