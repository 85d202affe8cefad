"""KCL 3.x lease management on the real Worker (in-memory backends): a leader assigns, leases
move by graceful handoff without re-reading, a dead leader fails over, finished leases go,
maxLeasesForWorker holds, and a stale owner index cannot start a lease it does not own."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.stream.conftest import FAILOVER, Harness
from tests.stream.test_worker import fill
from tributary.dataset import DatasetRegistry
from tributary_stream.assignment import BalanceConfig
from tributary_stream.stream import Page
from tributary_stream.testing import MemoryStream


class CountingStream(MemoryStream):
    """Counts every record read, per sequence number: a record read twice was re-read."""

    def __init__(self, shard_count: int) -> None:
        super().__init__(shard_count)
        self.reads: Counter[str] = Counter()

    async def get_records(self, iterator: str, limit: int) -> Page:
        page = await super().get_records(iterator, limit)
        self.reads.update(record.sequence for record in page.records)
        return page


async def test_a_lease_moved_on_purpose_is_handed_over_and_nothing_is_read_twice(
    registry: DatasetRegistry,
) -> None:
    """b joins while a holds all 4 leases and records keep coming: the leader moves two by
    handoff (a checkpoints what it landed and releases to b), and no record is read twice —
    where a steal makes the new owner re-read from the last checkpoint."""
    stream = CountingStream(4)
    h = Harness(registry, stream, config={"balance": BalanceConfig(by_load=False)})
    expected = fill(stream, 20)
    a = h.start("a")
    await h.wait_for(lambda: len(a.running) == 4 and sum(h.raw_lines().values()) >= 80)
    b = h.start("b")
    for round_ in range(10):
        expected += fill(stream, 3, start=100 + round_ * 3)
        await asyncio.sleep(FAILOVER / 4)
    await h.wait_for(lambda: len(a.running) == 2 and len(b.running) == 2, within=10)
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected))
    await h.stop_all()
    assert Counter(h.raw_lines()) == Counter(expected)
    assert h.metrics.total("LeasesHandedOff") == 2
    assert h.metrics.total("LeasesLost") == 0  # nothing forced
    assert max(stream.reads.values()) == 1  # every record read once
    assert all(
        lease.owner is None and lease.handoff_to is None for lease in h.store.leases.values()
    )


async def test_a_killed_leader_fails_over_and_its_leases_are_reassigned(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(4))
    expected = fill(h.stream, 10)
    a = h.start("a")
    await h.wait_for(lambda: h.fleet.leader == "a" and len(a.running) == 4)
    b = h.start("b")
    await h.wait_for(lambda: len(b.running) == 2, within=10)
    await h.kill(a)  # the leader, kill -9: no resignation, no release
    expected += fill(h.stream, 10, start=10)
    await h.wait_for(lambda: h.fleet.leader == "b" and len(b.running) == 4, within=10)
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected))
    await h.stop(b)
    assert h.raw_lines() == Counter(expected)  # exactly once across the kill: chain rule
    assert h.fleet.leader is None  # b resigned on SIGTERM


async def test_max_leases_for_worker_is_never_exceeded(registry: DatasetRegistry) -> None:
    h = Harness(registry, MemoryStream(5), config={"balance": BalanceConfig(max_leases=2)})
    fill(h.stream, 5)
    a = h.start("a")
    await asyncio.sleep(4 * FAILOVER)
    assert len(a.running) == 2
    assert sum(lease.owner == "a" for lease in h.store.leases.values()) == 2
    b, c = h.start("b"), h.start("c")
    await h.wait_for(lambda: sum(len(w.running) for w in (a, b, c)) == 5, within=10)
    assert max(len(w.running) for w in (a, b, c)) <= 2
    await h.stop_all()


async def test_a_stale_owner_index_cannot_start_a_lease_taken_since(
    registry: DatasetRegistry,
) -> None:
    """The GSI lags: b's index still says a lease is b's after it moved to c; b reads the row
    back (consistently) before taking it, and its take is conditional on that counter, so b
    never consumes it."""
    h = Harness(registry, MemoryStream(1), config={"assignment": "leader"})
    fill(h.stream, 5)
    b = h.start("b")
    await h.wait_for(lambda: len(b.running) == 1)
    await h.stop(b)
    (lease,) = h.store.leases.values()
    taken = await h.store.take(lease, "b")  # b's, per the index it is about to read
    assert taken is not None
    h.store.freeze_index()
    moved = await h.store.take(taken, "c")  # the table moves on; the index does not see it
    assert moved is not None

    async def c_renews() -> None:  # c is alive (outside the fleet row): its lease never expires
        lease = moved
        while True:
            renewed = await h.store.renew(lease)
            assert renewed is not None
            lease = renewed
            await asyncio.sleep(FAILOVER / 4)

    renewing = asyncio.create_task(c_renews())
    b2 = h.start("b")
    await asyncio.sleep(3 * FAILOVER)
    assert b2.running == {}
    assert h.metrics.total("LeasesTaken") == 1  # only b's first take: the stale row was refused
    assert h.store.leases[lease.key].owner == "c"
    renewing.cancel()
    h.store.thaw_index()
    await h.stop(b2)
