"""One contract for both lease stores: DynamoDB (over the wire, moto) and memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tributary.aws import AwsClients
from tributary.errors import PermanentError
from tributary.settings import AwsSettings
from tributary_stream.lease import Checkpoint, DynamoDbLeaseStore, Lease, LeaseStore
from tributary_stream.testing import MemoryLeaseStore


@pytest.fixture(params=["dynamodb", "memory"])
async def store(request: pytest.FixtureRequest, lake: AwsSettings) -> AsyncIterator[LeaseStore]:
    if request.param == "memory":
        yield MemoryLeaseStore()
        return
    async with AwsClients(lake) as clients:
        yield DynamoDbLeaseStore(await clients.dynamodb(), lake.lease_table)


def new(key: str = "shardId-000000000001", **kw: object) -> Lease:
    return Lease(key, None, 0, Checkpoint.TRIM_HORIZON, **kw)  # type: ignore[arg-type]


async def test_create_is_idempotent(store: LeaseStore) -> None:
    assert await store.create(new(parents=frozenset({"shardId-000000000000"})))
    assert not await store.create(new())
    (lease,) = await store.list_leases()
    assert lease == new(parents=frozenset({"shardId-000000000000"}))


async def test_take_renew_checkpoint_release_are_fenced(store: LeaseStore) -> None:
    await store.create(new())
    (free,) = await store.list_leases()
    mine = await store.take(free, "w1")
    assert mine is not None
    assert (mine.owner, mine.counter, mine.owner_switches) == ("w1", 1, 1)
    assert await store.take(free, "w2") is None  # stale counter: w1 got there first
    renewed = await store.renew(mine)
    assert renewed is not None
    assert renewed.counter == 2
    assert await store.renew(mine) is None  # a stale copy cannot renew
    stolen = await store.take(renewed, "w2")
    assert stolen is not None
    # The zombie w1 wakes up: it can neither checkpoint nor renew nor release.
    assert await store.checkpoint(renewed, "123", {}) is None
    assert await store.renew(renewed) is None
    assert not await store.release(renewed)
    done = await store.checkpoint(stolen, "456", {"raw/posts": "789"})
    assert done is not None
    (stored,) = await store.list_leases()
    assert (stored.owner, stored.checkpoint, dict(stored.landed)) == (
        "w2",
        "456",
        {"raw/posts": "789"},
    )
    assert stored.owner_switches == 0
    assert await store.release(done)
    (released,) = await store.list_leases()
    assert released.owner is None
    assert released.checkpoint == "456"
    assert await store.take(released, "w3") is not None


async def test_two_workers_racing_for_one_lease(store: LeaseStore) -> None:
    await store.create(new())
    (lease,) = await store.list_leases()
    results = [await store.take(lease, "a"), await store.take(lease, "b")]
    assert [r is not None for r in results] == [True, False]


async def test_an_empty_shard_id_is_refused(store: LeaseStore) -> None:
    with pytest.raises(PermanentError):
        await store.create(new(key=""))


async def test_updates_of_a_lease_that_is_not_there_are_fenced(store: LeaseStore) -> None:
    ghost = Lease("shardId-000000000009", "w1", 3, "123")
    assert await store.renew(ghost) is None
    assert await store.take(ghost, "w2") is None
    assert await store.checkpoint(ghost, "456", {}) is None
    assert not await store.release(ghost)
    assert await store.list_leases() == []


async def test_a_missing_table_is_permanent(lake: AwsSettings) -> None:
    async with AwsClients(lake) as clients:
        store = DynamoDbLeaseStore(await clients.dynamodb(), "no-such-table")
        with pytest.raises(PermanentError, match="check LEASE_TABLE"):
            await store.list_leases()


async def test_a_row_that_is_not_a_lease_is_a_clear_permanent_error(lake: AwsSettings) -> None:
    async with AwsClients(lake) as clients:
        db = await clients.dynamodb()
        await db.put_item(TableName=lake.lease_table, Item={"leaseKey": {"S": "stranger"}})
        with pytest.raises(PermanentError, match="'stranger' is not a lease"):
            await DynamoDbLeaseStore(db, lake.lease_table).list_leases()


async def test_take_returns_the_stored_row_not_the_callers_copy(store: LeaseStore) -> None:
    """B takes and checkpoints after A scanned: A's take (the counter is unchanged by the
    checkpoint) must hand A the row as stored, so A's own checkpoint is accepted."""
    await store.create(new())
    (free,) = await store.list_leases()
    b = await store.take(free, "B")
    assert b is not None
    (seen,) = await store.list_leases()  # A's scan
    assert await store.checkpoint(b, "200", {"raw/posts": "210"}) is not None
    a = await store.take(seen, "A")
    assert a is not None
    (row,) = await store.list_leases()
    assert a == row
    assert (a.checkpoint, dict(a.landed)) == ("200", {"raw/posts": "210"})
    assert await store.checkpoint(a, "300", {}) is not None


async def test_a_zombie_checkpoint_is_refused_after_the_lease_came_back_a_b_a(
    store: LeaseStore,
) -> None:
    """A checkpoints, B takes and checkpoints, A takes it back and checkpoints: A's first
    consumer (same owner, stale copy) must not move the checkpoint back."""
    await store.create(new())
    (free,) = await store.list_leases()
    a = await store.take(free, "A")
    assert a is not None
    zombie = await store.checkpoint(a, "100", {})
    assert zombie is not None
    (row,) = await store.list_leases()
    b = await store.take(row, "B")
    assert b is not None
    assert await store.checkpoint(b, "200", {}) is not None
    (row,) = await store.list_leases()
    a2 = await store.take(row, "A")
    assert a2 is not None
    assert await store.checkpoint(a2, "300", {}) is not None
    assert await store.checkpoint(zombie, "150", {"raw/posts": "160"}) is None
    (row,) = await store.list_leases()
    assert (row.checkpoint, dict(row.landed)) == ("300", {})


async def test_a_checkpoint_after_renewals_and_checkpoints_is_accepted(store: LeaseStore) -> None:
    """Renewals never fence the owner's checkpoints, nor do its own earlier checkpoints (a
    retried checkpoint that had in fact gone through is accepted again)."""
    await store.create(new())
    (free,) = await store.list_leases()
    mine = await store.take(free, "w1")
    assert mine is not None
    renewed = await store.renew(mine)
    assert renewed is not None
    assert await store.renew(renewed) is not None
    first = await store.checkpoint(mine, "100", {})  # the consumer's copy: counter 1
    assert first is not None
    assert await store.checkpoint(mine, "100", {}) is not None  # the retry of that call
    assert await store.checkpoint(first, "200", {}) is not None
    (row,) = await store.list_leases()
    assert (row.owner, row.counter, row.checkpoint) == ("w1", 3, "200")


async def test_get_reads_one_lease_as_stored(store: LeaseStore) -> None:
    await store.create(new())
    assert await store.get("shardId-000000000009") is None
    (free,) = await store.list_leases()
    mine = await store.take(free, "w1")
    assert mine is not None
    renewed = await store.renew(mine)
    assert renewed is not None
    assert await store.get(mine.key) == (await store.list_leases())[0]
    assert (await store.get(mine.key)) == renewed
