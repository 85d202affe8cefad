"""A shard that keeps failing is given up for a cool-down, and the worker says it is unhealthy
when a shard makes no checkpoint progress while failing or behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.stream.conftest import Harness, envelope, landed
from tributary.dataset import DatasetRegistry
from tributary.raw_writer import RawObject, WriteOutcome
from tributary.testing import MemoryRawWriter
from tributary_stream.lease import Lease
from tributary_stream.stream import Page
from tributary_stream.testing import MemoryLeaseStore, MemoryStream

SHARD = "shardId-000000000000"


class Buggy(MemoryRawWriter):
    """Every put fails with a bug (not a refusal) while `broken` is set."""

    broken = True

    async def put(self, obj: RawObject) -> WriteOutcome:
        if self.broken:
            raise RuntimeError("a bug in the writer (fault injected)")
        return await super().put(obj)


def at_end(h: Harness) -> bool:
    lease = h.store.leases.get(SHARD)
    return lease is not None and lease.checkpoint == h.stream.shards[SHARD][-1].sequence


async def test_a_shard_failing_without_progress_is_given_up_then_retaken(
    registry: DatasetRegistry,
) -> None:
    writer = Buggy()
    h = Harness(
        registry,
        MemoryStream(1),
        writer=writer,
        config={"release_after_failures": 3, "failing_cool_down_s": 3.0},
    )
    sent = [envelope("events", f"e{i}", {"i": i}) for i in range(3)]
    for data in sent:
        h.stream.put(SHARD, data)
    worker = h.start()
    await h.wait_for(lambda: h.metrics.total("LeasesGivenUp", shard=SHARD) == 1)
    assert h.metrics.total("ShardFailures", shard=SHARD) == 3
    await asyncio.sleep(0.3)  # cooling down: released, and not taken again yet
    assert h.store.leases[SHARD].owner is None
    assert SHARD not in worker.running
    writer.broken = False
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    assert h.metrics.total("LeasesTaken") == 2
    assert h.raw_lines() == landed(sent)


@pytest.mark.parametrize("ending", ["stop", "lease lost"])
async def test_a_stop_or_a_lost_lease_ends_a_failed_shards_restart_backoff_at_once(
    registry: DatasetRegistry, ending: str
) -> None:
    """A shard consumer that failed is rerun after `restart_backoff_s` (doubling, jittered in
    its upper half); a stop (SIGTERM) or the lease lost during that wait ends it: the worker
    stops and releases the lease, or drops the shard, without sleeping it out. The wait here is
    at least half an hour and the drain's timeout an hour, so a worker that sleeps it out never
    gets there."""
    hour = 3600.0
    h = Harness(
        registry,
        MemoryStream(1),
        writer=Buggy(),
        config={"restart_backoff_s": hour, "max_backoff_s": hour, "shutdown_timeout_s": hour},
    )
    h.stream.put(SHARD, envelope("events", "e1", {"i": 1}))
    worker = h.start()
    await h.wait_for(lambda: h.metrics.total("ShardFailures", shard=SHARD) == 1)
    if ending == "stop":
        await h.stop(worker)  # within 10 s
        assert h.store.leases[SHARD].owner is None  # released
    else:
        worker.running[SHARD].consumer.lost.set()
        await h.wait_for(lambda: SHARD not in worker.running, within=10)
        await h.kill(worker)
    assert h.metrics.total("ShardFailures", shard=SHARD) == 1  # not rerun


async def test_a_shard_failing_for_longer_than_stall_s_makes_the_worker_unhealthy(
    registry: DatasetRegistry, tmp_path: Path
) -> None:
    health = tmp_path / "health"
    writer = Buggy()
    h = Harness(
        registry, MemoryStream(1), writer=writer, config={"health_file": health, "stall_s": 0.5}
    )
    h.stream.put(SHARD, envelope("events", "e1", {"i": 1}))
    worker = h.start()
    await h.wait_for(lambda: health.exists())
    await h.wait_for(lambda: bool(worker.unhealthy()))
    assert worker.unhealthy() == [f"{SHARD}: no checkpoint for 0.5 s while failing or behind"]
    touched = health.stat().st_mtime_ns
    await asyncio.sleep(0.5)  # renewal rounds (every 0.2 s) no longer touch it
    assert health.stat().st_mtime_ns == touched
    writer.broken = False
    await h.wait_for(lambda: at_end(h))
    await h.wait_for(lambda: health.stat().st_mtime_ns > touched)
    assert worker.unhealthy() == []
    await h.stop(worker)


class SlowScans(MemoryLeaseStore):
    """Scans and owner-index queries (the coordination loop's) hang while `free` is clear;
    renewals answer at once."""

    def __init__(self) -> None:
        super().__init__()
        self.free = asyncio.Event()
        self.free.set()

    async def list_leases(self, consistent: bool = True) -> list[Lease]:
        await self.free.wait()
        return await super().list_leases(consistent)

    async def list_owned(self, owner: str, consistent: bool = False) -> list[str]:
        await self.free.wait()
        return await super().list_owned(owner, consistent)


async def test_a_hanging_lease_scan_is_cut_off_and_the_worker_stays_healthy(
    registry: DatasetRegistry,
) -> None:
    store = SlowScans()
    h = Harness(registry, MemoryStream(1), store=store, config={"coordination_deadline_s": 0.3})
    h.stream.put(SHARD, envelope("events", "e1", {"i": 1}))
    worker = h.start()
    await h.wait_for(lambda: at_end(h))
    store.free.clear()  # a DynamoDB brownout for Scan
    counter = store.leases[SHARD].counter
    await asyncio.sleep(1.5)  # 2.5x the coordination loop's health limit (2 x 0.3 s)
    assert worker.unhealthy() == []
    assert h.metrics.total("CoordinationFailures") >= 1
    assert store.leases[SHARD].counter > counter  # renewals went on
    store.free.set()
    await h.stop(worker)


class HangingReads(MemoryStream):
    """GetRecords hangs while `flowing` is clear: a read loop that stopped turning."""

    def __init__(self) -> None:
        super().__init__(1)
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def get_records(self, iterator: str, limit: int) -> Page:
        await self.flowing.wait()
        return await super().get_records(iterator, limit)


async def test_a_read_loop_that_stops_turning_makes_the_worker_unhealthy(
    registry: DatasetRegistry,
) -> None:
    stream = HangingReads()
    h = Harness(registry, stream, config={"stall_s": 0.5})
    stream.put(SHARD, envelope("events", "e1", {"i": 1}))
    worker = h.start()
    await h.wait_for(lambda: at_end(h))
    assert worker.unhealthy() == []
    stream.flowing.clear()
    await h.wait_for(lambda: bool(worker.unhealthy()))
    assert worker.unhealthy() == [f"{SHARD}: read loop still for 0.5 s"]
    stream.flowing.set()
    await h.wait_for(lambda: not worker.unhealthy())
    await h.stop(worker)


async def test_a_shard_given_up_for_longer_than_stall_s_keeps_the_worker_unhealthy(
    registry: DatasetRegistry,
) -> None:
    h = Harness(
        registry,
        MemoryStream(1),
        writer=Buggy(),
        config={"release_after_failures": 2, "failing_cool_down_s": 30.0, "stall_s": 0.5},
    )
    h.stream.put(SHARD, envelope("events", "e1", {"i": 1}))
    worker = h.start()
    await h.wait_for(lambda: h.metrics.total("LeasesGivenUp", shard=SHARD) == 1)
    await h.wait_for(lambda: bool(worker.unhealthy()))
    assert worker.unhealthy() == [f"{SHARD}: given up, no checkpoint for 0.5 s"]
    await h.stop(worker)


async def test_a_shard_taken_back_after_its_cool_down_keeps_its_checkpoint_age(
    registry: DatasetRegistry,
) -> None:
    h = Harness(
        registry,
        MemoryStream(1),
        writer=Buggy(),
        config={"release_after_failures": 2, "failing_cool_down_s": 0.3},
    )
    h.stream.put(SHARD, envelope("events", "e1", {"i": 1}))
    worker = h.start()
    await h.wait_for(lambda: SHARD in worker.running)
    since = worker.running[SHARD].consumer.checkpointed_at
    # Seen running again in the same step as the count (the writer still fails: it is given
    # up again soon after; each retake keeps the age).
    await h.wait_for(lambda: h.metrics.total("LeasesTaken") >= 2 and SHARD in worker.running)
    assert worker.running[SHARD].consumer.checkpointed_at == since
    await h.stop(worker)
