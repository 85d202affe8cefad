"""A rewind asks running workers to release: it holds each lease (no take, no forced handoff
until the rewind is recorded or the hold runs out), the owner's next renewal sees the hold and
the consumer stops, checkpoints what it landed and releases, and only then is the checkpoint
moved; an owner that does not answer in time is fenced. Real Workers on the in-memory stream and
lease store (the wire test with worker processes is tests/stack/test_rewind.py), and the hold's
contract on both lease stores (DynamoDB on moto, memory)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.stream.conftest import Harness, landed
from tests.stream.test_worker import fill
from tributary.aws import AwsClients
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import TransientError
from tributary.memory_writer import MemoryRawWriter
from tributary.settings import AwsSettings
from tributary_stack.replay.rewind import (
    Action,
    Release,
    Rewinder,
    RewindPoint,
    RewindRequest,
    ShardPlan,
)
from tributary_stream.lease import (
    Checkpoint,
    Lease,
    LeaseStore,
    RewindHold,
    RewindTo,
    Rewound,
)
from tributary_stream.lease_table import DynamoDbLeaseStore
from tributary_stream.testing import MemoryLeaseStore, MemoryStream

SHARD = "shardId-000000000001"


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["dynamodb", "memory"])
async def store(request: pytest.FixtureRequest, lake: AwsSettings) -> AsyncIterator[LeaseStore]:
    clock = FixedClock(NOW)
    if request.param == "memory":
        yield MemoryLeaseStore(clock)
        return
    async with AwsClients(lake) as clients:
        yield DynamoDbLeaseStore(await clients.dynamodb(), lake.lease_table, clock)


async def owned(store: LeaseStore) -> Lease:
    await store.create(Lease(SHARD, None, 0, Checkpoint.TRIM_HORIZON))
    lease = await store.get(SHARD)
    assert lease is not None
    taken = await store.take(lease, "w1")
    assert taken is not None
    return taken


async def test_a_held_lease_is_not_taken_until_the_rewind_is_recorded(store: LeaseStore) -> None:
    lease = await owned(store)
    until = (NOW + timedelta(minutes=5)).timestamp()
    held = await store.hold_for_rewind(lease, RewindHold("r1", until))
    assert held is not None
    assert held.hold == RewindHold("r1", until)
    assert held.owner == "w1"
    assert held.token == lease.token
    renewed = await store.renew(lease)
    assert renewed is not None
    assert renewed.held(NOW)
    assert await store.checkpoint(renewed, "100", {}) is not None  # and may checkpoint
    assert await store.release(renewed)
    free = await store.get(SHARD)
    assert free is not None
    assert free.owner is None
    assert await store.take(free, "w2") is None  # held: nobody takes it
    assert await store.request_handoff(lease, "w2") is False
    to = RewindTo(Checkpoint.TRIM_HORIZON, None, {})
    assert await store.rewind(
        free, to, Rewound("r1", "ann@host", "now", "TRIM_HORIZON", "released")
    )
    rewound = await store.get(SHARD)
    assert rewound is not None
    assert rewound.hold is None
    assert rewound.rewound is not None
    assert rewound.rewound.how == "released"
    assert await store.take(rewound, "w2") is not None  # recorded: takes go on
    assert await store.hold_for_rewind(rewound, RewindHold("r1", until)) is None  # done already


async def test_a_forced_handoff_waits_for_the_hold_and_an_old_hold_runs_out(
    store: LeaseStore,
) -> None:
    lease = await owned(store)
    assert await store.request_handoff(lease, "w2")
    asked = await store.get(SHARD)
    assert asked is not None
    assert await store.hold_for_rewind(asked, RewindHold("r1", NOW.timestamp() + 60)) is not None
    assert await store.force_handoff(asked, "w2") is None  # held
    # A rewind killed after holding: once the hold has run out, the shard is read on.
    assert await store.hold_for_rewind(asked, RewindHold("r1", NOW.timestamp() - 1)) is not None
    gone = await store.get(SHARD)
    assert gone is not None
    assert not gone.held(NOW)
    assert await store.force_handoff(gone, "w2") is not None


async def rewind_with(h: Harness, release_s: float) -> list[ShardPlan]:
    rewinder = Rewinder(h.store, h.stream, h.writer, ["posts", "events"], SystemClock())
    request = RewindRequest(
        RewindPoint(None), frozenset(), "ann@host", "r-test", release_timeout_s=release_s
    )
    return await rewinder.run(request)


@pytest.mark.parametrize("assignment", ["leader", "scan"])
async def test_running_workers_release_when_asked_and_replay_lands_nothing_twice(
    registry: DatasetRegistry, assignment: str
) -> None:
    h = Harness(registry, MemoryStream(2), max_records=5, config={"assignment": assignment})
    expected = fill(h.stream, 23)
    worker = h.start("a")
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=20)
    await h.wait_for(
        lambda: all(lease.checkpoint.isdigit() for lease in h.store.leases.values()), within=20
    )
    plans = await rewind_with(h, release_s=20)
    assert [(p.action, p.release, p.owner) for p in plans] == [
        (Action.REWIND, Release.RELEASED, "a"),
        (Action.REWIND, Release.RELEASED, "a"),
    ]
    assert h.metrics.total("LeasesReleasedForRewind") == 2
    assert h.metrics.total("LeasesLost") == 0  # released, never fenced: no zombie landing
    for lease in h.store.leases.values():
        assert lease.rewound is not None
        assert lease.rewound.how == "released"
    expected += fill(h.stream, 4, start=500)
    await h.wait_for(
        lambda: len(worker.running) == 2 and sum(h.raw_lines().values()) >= len(expected),
        within=20,
    )
    await h.stop_all()
    assert h.raw_lines() == landed(expected)  # the replay adopted what was landed


async def test_a_dead_owner_is_fenced_after_the_release_timeout(registry: DatasetRegistry) -> None:
    h = Harness(registry, MemoryStream(2), max_records=5)
    expected = fill(h.stream, 10)
    worker = h.start("a")
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=20)
    await h.kill(worker)  # kill -9: it never answers
    plans = await rewind_with(h, release_s=0.5)
    assert {(p.action, p.release) for p in plans} == {(Action.REWIND, Release.FENCED)}
    for lease in h.store.leases.values():
        assert lease.owner is None
        assert lease.hold is None
        assert lease.rewound is not None
        assert lease.rewound.how == "fenced"
    h.start("b")
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=20)
    await h.stop_all()
    assert h.raw_lines() == landed(expected)


class FailingLake(MemoryRawWriter):
    """A lake whose listing runs `before` first (or fails when it is None): the chain
    positions a rewind reads after its holds are set."""

    def __init__(self, before: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.before = before

    async def keys(self, prefix: str) -> list[str]:
        if self.before is None:
            raise TransientError("S3 listing failed (injected)")
        self.before()
        return await super().keys(prefix)


async def test_a_rewind_that_fails_after_holding_removes_its_holds_and_workers_read_on(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(2), max_records=5)
    expected = fill(h.stream, 10)
    worker = h.start("a")
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=20)
    rewinder = Rewinder(h.store, h.stream, FailingLake(), ["posts", "events"], SystemClock())
    request = RewindRequest(
        RewindPoint(None), frozenset(), "ann@host", "r-fail", release_timeout_s=20
    )
    with pytest.raises(TransientError, match="injected"):
        await rewinder.run(request)  # the owner released, then the chain listing failed
    for lease in h.store.leases.values():
        assert lease.hold is None  # removed on the way out: nobody waits for it to lapse
        assert lease.rewound is None
    await h.wait_for(lambda: len(worker.running) == 2, within=20)  # taken again at once
    expected += fill(h.stream, 3, start=500)
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=20)
    await h.stop_all()
    assert h.raw_lines() == landed(expected)


async def test_a_rewind_cancelled_while_waiting_for_release_removes_its_holds(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(2), max_records=5)
    fill(h.stream, 10)
    worker = h.start("a")
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= 20, within=20)
    await h.kill(worker)  # it never answers: the rewind waits (Ctrl-C comes meanwhile)
    rewinder = Rewinder(h.store, h.stream, h.writer, ["posts", "events"], SystemClock())
    request = RewindRequest(
        RewindPoint(None), frozenset(), "ann@host", "r-cancel", release_timeout_s=60
    )
    task = asyncio.create_task(rewinder.run(request))
    await h.wait_for(lambda: all(le.hold for le in h.store.leases.values()), within=20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [lease.hold for lease in h.store.leases.values()] == [None, None]


async def test_a_lease_taken_after_its_hold_lapsed_is_recorded_as_fenced() -> None:
    clock = FixedClock(NOW)
    store = MemoryLeaseStore(clock)
    stream = MemoryStream(1)
    shard = next(iter(stream.shards))
    stream.put(shard, b"x", partition_key="k")
    await store.create(Lease(shard, None, 0, Checkpoint.TRIM_HORIZON))
    created = await store.get(shard)
    assert created is not None
    w1 = await store.take(created, "w1")
    assert w1 is not None
    w1 = await store.checkpoint(w1, "99999999999999999999", {})
    assert w1 is not None
    tasks = []

    def progress(line: str) -> None:
        if "asked w1" in line:  # w1 answers: it releases to nobody
            tasks.append(asyncio.get_running_loop().create_task(release()))

    async def release() -> None:
        row = await store.get(shard)
        assert row is not None
        assert await store.release(row)

    def lapse_and_take() -> None:  # the chain listing ran past the hold: w2 took the lease
        clock.at = NOW + timedelta(minutes=10)
        row = store.leases[shard]
        store.leases[shard] = replace(row, owner="w2", counter=row.counter + 1)

    rewinder = Rewinder(store, stream, FailingLake(lapse_and_take), ["posts"], clock, progress)
    request = RewindRequest(RewindPoint(None), frozenset(), "ann@host", "r-late")
    [plan] = await rewinder.run(request)
    row = store.leases[shard]
    assert row.rewound is not None
    assert row.rewound.how == "fenced"  # w2 was on the row when it was rewound
    assert plan.release is Release.FENCED
    assert plan.owner == "w2"
    assert row.owner is None


async def test_a_release_with_a_pending_handoff_goes_to_nobody_while_held(
    store: LeaseStore,
) -> None:
    lease = await owned(store)
    assert await store.request_handoff(lease, "w2")
    asked = await store.get(SHARD)
    assert asked is not None
    assert await store.hold_for_rewind(asked, RewindHold("r1", NOW.timestamp() + 30))
    assert await store.release(asked)  # the consumer stopped for the handoff, then the hold
    row = await store.get(SHARD)
    assert row is not None
    assert row.owner is None  # not w2: the rewind frees it once recorded
    assert row.handoff_to is None
    assert await store.unhold(row, "other") is False
    assert await store.unhold(row, "r1") is True
    free = await store.get(SHARD)
    assert free is not None
    assert free.hold is None
    assert await store.take(free, "w2") is not None


async def test_a_hold_still_holds_at_its_until_and_lapses_a_millisecond_later(
    store: LeaseStore,
) -> None:
    lease = await owned(store)
    assert await store.hold_for_rewind(lease, RewindHold("r1", NOW.timestamp()))
    row = await store.get(SHARD)
    assert row is not None
    assert row.held(NOW)
    assert await store.take(row, "w2") is None  # until == now: still held, on both stores
    assert await store.hold_for_rewind(row, RewindHold("r1", NOW.timestamp() - 0.001))
    row = await store.get(SHARD)
    assert row is not None
    assert not row.held(NOW)
    assert await store.take(row, "w2") is not None


class SnapshotStore(MemoryLeaseStore):
    """Records, when each lease is rewound, its stored checkpoint and the last sequence number
    landed in raw for its shard (what the owner read and landed before it let go)."""

    def __init__(self, lake: MemoryRawWriter) -> None:
        super().__init__()
        self.lake = lake
        self.at_rewind: dict[str, tuple[str, int]] = {}

    async def rewind(self, lease: Lease, to: RewindTo, record: Rewound) -> bool:
        stored = self.leases[lease.key]
        lasts = [
            int(obj.last)
            for key, obj in self.lake.objects.items()
            if key.rsplit("/", 1)[-1].startswith(lease.key)
        ]
        applied = await super().rewind(lease, to, record)
        if applied:
            self.at_rewind[lease.key] = (stored.checkpoint, max(lasts, default=-1))
        return applied


async def test_workers_release_with_batches_in_flight_while_producers_keep_sending(
    registry: DatasetRegistry,
) -> None:
    writer = MemoryRawWriter()
    store = SnapshotStore(writer)
    h = Harness(registry, MemoryStream(2), max_records=50, store=store, writer=writer)
    expected = fill(h.stream, 20)
    h.start("a")
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=20)
    sending = True

    async def produce() -> None:  # keeps records arriving: a batch is open at the release
        round_ = 0
        while sending:
            expected.extend(fill(h.stream, 3, start=1000 + 3 * round_))
            round_ += 1
            await asyncio.sleep(0.01)

    producer = asyncio.create_task(produce())
    await asyncio.sleep(0.3)
    plans = await rewind_with(h, release_s=20)
    sending = False
    await producer
    assert [(p.action, p.release) for p in plans] == [(Action.REWIND, Release.RELEASED)] * 2
    assert h.metrics.total("LeasesReleasedForRewind") == 2
    assert h.metrics.total("LeasesLost") == 0  # no consumer lost its lease: none was fenced
    for shard, (checkpoint, last_landed) in store.at_rewind.items():
        assert int(checkpoint) == last_landed, shard  # it landed and checkpointed what it read
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=30)
    await h.stop_all()
    assert h.metrics.total("LeasesLost") == 0
    assert h.raw_lines() == landed(expected)  # every record once, the replay adopted the rest
