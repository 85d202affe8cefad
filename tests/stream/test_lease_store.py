"""One contract for both lease stores: DynamoDB (over the wire, moto) and memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tributary.aws import AwsClients
from tributary.errors import ConfigError, PermanentError
from tributary.settings import AwsSettings
from tributary_stream.fleet import DynamoDbFleetStore, FleetView, WorkerBeat
from tributary_stream.lease import (
    Checkpoint,
    Lease,
    LeaseStore,
    RewindTo,
    Rewound,
)
from tributary_stream.lease_table import DynamoDbLeaseStore
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


async def taken(store: LeaseStore, key: str, owner: str) -> Lease:
    await store.create(new(key))
    lease = await store.get(key)
    assert lease is not None
    got = await store.take(lease, owner)
    assert got is not None
    return got


async def test_the_owner_index_lists_an_owners_leases_and_refuses_consistent_reads(
    store: LeaseStore,
) -> None:
    """The leaseOwner GSI (keys only): only that owner's leases; a GSI has no consistent reads
    (DynamoDB and moto answer ValidationException), and the memory store refuses it too."""
    await taken(store, "shardId-000000000001", "w1")
    await taken(store, "shardId-000000000002", "w2")
    await taken(store, "shardId-000000000003", "w1")
    await store.create(new("shardId-000000000004"))  # no owner: not in the index
    assert await store.list_owned("w1") == ["shardId-000000000001", "shardId-000000000003"]
    assert await store.list_owned("nobody") == []
    with pytest.raises(PermanentError, match="ValidationException"):
        await store.list_owned("w1", consistent=True)
    assert len(await store.list_leases(consistent=False)) == 4


async def test_renew_stores_throughput_and_shows_a_handoff_request(store: LeaseStore) -> None:
    mine = await taken(store, "shardId-000000000001", "A")
    renewed = await store.renew(replace(mine, throughput_bps=2048.0, records_per_s=12.5))
    assert renewed is not None
    assert (renewed.throughput_bps, renewed.records_per_s, renewed.handoff_to) == (
        2048.0,
        12.5,
        None,
    )
    assert await store.request_handoff(renewed, "B")
    again = await store.renew(renewed)
    assert again is not None
    assert again.handoff_to == "B"
    assert again.counter == renewed.counter + 1


async def test_a_graceful_handoff_checkpoints_then_releases_to_the_new_owner(
    store: LeaseStore,
) -> None:
    mine = await taken(store, "shardId-000000000001", "A")
    assert await store.request_handoff(mine, "B")
    row = await store.renew(mine)
    assert row is not None
    done = await store.checkpoint(row, "500", {})
    assert done is not None
    assert await store.release(replace(done, handoff_to="B"))
    (stored,) = await store.list_leases()
    assert (stored.owner, stored.handoff_to, stored.checkpoint) == ("B", None, "500")
    assert await store.list_owned("B") == [stored.key]
    assert await store.list_owned("A") == []
    b = await store.take(stored, "B")  # B's pickup: a take token of its own
    assert b is not None
    assert b.token != mine.token
    assert await store.checkpoint(done, "600", {}) is None  # A's token is dead


async def test_a_cancelled_handoff_fences_the_release_to_its_target(store: LeaseStore) -> None:
    """A worker that stops withdraws the handoffs asked of others to it: the owner's release
    to it then fails (the owner keeps the lease and restarts it)."""
    mine = await taken(store, "shardId-000000000001", "A")
    assert await store.request_handoff(mine, "B")
    assert not await store.cancel_handoff(mine, "C")  # not the request
    assert not await store.cancel_handoff(replace(mine, token="other"), "B")
    assert await store.cancel_handoff(mine, "B")
    assert not await store.cancel_handoff(mine, "B")  # withdrawn already
    assert not await store.release(replace(mine, handoff_to="B"))
    (stored,) = await store.list_leases()
    assert (stored.owner, stored.handoff_to) == ("A", None)
    renewed = await store.renew(mine)  # still A's, as taken
    assert renewed is not None
    stolen = await store.take(renewed, "C")
    assert stolen is not None
    assert await store.request_handoff(stolen, "B")
    assert not await store.cancel_handoff(mine, "B")  # A's copy: C took it since


async def test_a_handoff_request_and_its_release_are_fenced(store: LeaseStore) -> None:
    mine = await taken(store, "shardId-000000000001", "A")
    stolen = await store.take(mine, "C")
    assert stolen is not None
    assert not await store.request_handoff(mine, "B")  # A's copy: C took it since
    assert await store.request_handoff(stolen, "B")
    assert await store.request_handoff(stolen, "D")  # the leader changed its mind
    assert not await store.release(replace(stolen, handoff_to="B"))  # not the request now
    (stored,) = await store.list_leases()
    assert (stored.owner, stored.handoff_to) == ("C", "D")
    again = await store.take(stored, "E")  # a take clears the request
    assert again is not None
    assert again.handoff_to is None
    assert not await store.request_handoff(Lease("shardId-000000000009", "A", 1, "1"), "B")


async def test_a_forced_handoff_fences_the_old_owner_out(store: LeaseStore) -> None:
    mine = await taken(store, "shardId-000000000001", "A")
    assert await store.force_handoff(mine, "B") is None  # nothing requested
    assert await store.request_handoff(mine, "B")
    renewed = await store.renew(mine)  # A renews on: the counter moved, the token did not
    assert renewed is not None
    assert await store.force_handoff(mine, "C") is None  # not the requested worker
    forced = await store.force_handoff(mine, "B")
    assert forced is not None
    assert (forced.owner, forced.handoff_to, forced.counter) == ("B", None, renewed.counter + 1)
    assert forced.token not in ("", mine.token)
    assert await store.renew(renewed) is None
    assert await store.checkpoint(renewed, "700", {}) is None
    assert not await store.release(renewed)
    assert await store.force_handoff(mine, "B") is None  # done once


async def test_only_an_unchanged_finished_lease_is_deleted(store: LeaseStore) -> None:
    mine = await taken(store, "shardId-000000000001", "A")
    assert not await store.delete(mine)  # not finished
    done = await store.checkpoint(mine, Checkpoint.SHARD_END, {})
    assert done is not None
    renewed = await store.renew(done)
    assert renewed is not None
    assert not await store.delete(done)  # stale counter
    assert await store.delete(renewed)
    assert await store.list_leases() == []
    assert not await store.delete(renewed)


async def test_the_fleet_row_is_not_in_the_lease_table(lake: AwsSettings) -> None:
    """A consumer of an older version (a rolling upgrade, a rollback) scans the lease table and
    parses every row as a lease: the fleet's beats and lock live in their own table, so that
    scan sees only leases. A `_fleet` row an earlier build left there is still skipped."""
    async with AwsClients(lake) as clients:
        db = await clients.dynamodb()
        fleet = DynamoDbFleetStore(db, lake.fleet_table)
        await fleet.beat(WorkerBeat("w1", 1))
        assert await fleet.claim_leader("w1", FleetView())
        store = DynamoDbLeaseStore(db, lake.lease_table)
        assert await store.create(Lease("shardId-000000000001", None, 0, Checkpoint.TRIM_HORIZON))
        rows = (await db.scan(TableName=lake.lease_table, ConsistentRead=True))["Items"]
        assert [r["leaseKey"]["S"] for r in rows] == ["shardId-000000000001"]
        assert all({"leaseCounter", "checkpoint"} <= set(r) for r in rows)  # what 2.x parses
        await db.put_item(
            TableName=lake.lease_table,
            Item={"leaseKey": {"S": "_fleet"}, "leaderId": {"S": "w1"}},
        )
        assert [lease.key for lease in await store.list_leases()] == ["shardId-000000000001"]
        assert await store.list_owned("w1") == []


# ---- rewind (tributary_stack.replay.rewind writes the lease table only through this) --------

AN_HOUR = datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)


def rewound(rewind_id: str = "r1") -> Rewound:
    return Rewound(rewind_id, "ann@host", "2026-11-30T11:00:00.000Z", "2026-11-30T10:00:00.123Z")


async def test_a_rewind_frees_the_lease_at_its_point_and_fences_the_old_owner(
    store: LeaseStore,
) -> None:
    held = await taken(store, "shardId-000000000001", "A")
    mine = await store.checkpoint(held, "900", {"raw/posts": "950"})
    assert mine is not None
    assert await store.request_handoff(mine, "B")  # a pending handoff: the rewind cancels it
    asked = await store.get(mine.key)
    assert asked is not None
    to = RewindTo(Checkpoint.AT_TIMESTAMP, AN_HOUR, {"raw/posts": "120"})
    assert await store.rewind(asked, to, rewound())
    row = await store.get(mine.key)
    assert row is not None
    assert (row.owner, row.handoff_to, row.checkpoint, row.timestamp, dict(row.landed)) == (
        None,
        None,
        Checkpoint.AT_TIMESTAMP,
        AN_HOUR,
        {"raw/posts": "120"},
    )
    assert row.rewound == rewound()
    assert row.counter == asked.counter + 1
    assert row.token not in ("", asked.token)
    # The old owner's every write fails after it: renew, checkpoint, release, the handoff.
    assert await store.renew(asked) is None
    assert await store.checkpoint(asked, "1000", {}) is None
    assert not await store.release(asked)
    assert not await store.release(replace(asked, handoff_to="B"))
    assert await store.force_handoff(asked, "B") is None
    assert await store.rewind(row, to, rewound()) is False  # the same rewind never twice
    assert await store.rewind(asked, to, rewound("r2")) is False  # stale counter
    assert await store.get(mine.key) == row
    # The next owner resumes there; a later checkpoint (a sequence) drops the timestamp.
    nxt = await store.take(row, "C")
    assert nxt is not None
    assert (nxt.checkpoint, nxt.timestamp) == (Checkpoint.AT_TIMESTAMP, AN_HOUR)
    moved = await store.checkpoint(nxt, "130", {})
    assert moved is not None
    stored = await store.get(mine.key)
    assert stored is not None
    assert (stored.checkpoint, stored.timestamp, stored.rewound) == ("130", None, rewound())
    trim = RewindTo(Checkpoint.TRIM_HORIZON, None, {})
    assert await store.rewind(stored, trim, rewound("r2"))  # a new rewind id applies
    again = await store.get(mine.key)
    assert again is not None
    assert (again.checkpoint, again.timestamp, again.owner) == (Checkpoint.TRIM_HORIZON, None, None)


async def test_a_rewind_refuses_coordination_rows_bad_positions_and_missing_leases(
    store: LeaseStore,
) -> None:
    lease = new()
    await store.create(lease)
    at = RewindTo(Checkpoint.AT_TIMESTAMP, AN_HOUR, {})
    with pytest.raises(PermanentError, match="coordination row"):
        await store.rewind(replace(lease, key="_fleet"), at, rewound())
    with pytest.raises(PermanentError, match="needs a timestamp"):
        await store.rewind(lease, RewindTo(Checkpoint.AT_TIMESTAMP, None, {}), rewound())
    with pytest.raises(PermanentError, match="needs a timestamp"):
        await store.rewind(lease, RewindTo(Checkpoint.TRIM_HORIZON, AN_HOUR, {}), rewound())
    with pytest.raises(PermanentError, match="TRIM_HORIZON or AT_TIMESTAMP"):
        await store.rewind(lease, RewindTo(Checkpoint.LATEST, None, {}), rewound())
    assert await store.rewind(new(key="shardId-000000000007"), at, rewound()) is False
    assert [x.key for x in await store.list_leases()] == [lease.key]  # nothing created
    assert await store.get(lease.key) == lease


async def test_a_rewind_leaves_the_fleet_row_alone(lake: AwsSettings) -> None:
    async with AwsClients(lake) as clients:
        db = await clients.dynamodb()
        await db.put_item(  # a `_fleet` row an earlier build left in the lease table
            TableName=lake.lease_table,
            Item={"leaseKey": {"S": "_fleet"}, "leaderId": {"S": "w1"}},
        )
        before = await db.get_item(TableName=lake.lease_table, Key={"leaseKey": {"S": "_fleet"}})
        store = DynamoDbLeaseStore(db, lake.lease_table)
        fleet = Lease("_fleet", None, 0, Checkpoint.TRIM_HORIZON)
        with pytest.raises(PermanentError):
            await store.rewind(fleet, RewindTo(Checkpoint.TRIM_HORIZON, None, {}), rewound())
        after = await db.get_item(TableName=lake.lease_table, Key={"leaseKey": {"S": "_fleet"}})
        assert after["Item"] == before["Item"]


@pytest.fixture(params=["dynamodb", "memory"])
async def without_index(
    request: pytest.FixtureRequest, lake: AwsSettings
) -> AsyncIterator[LeaseStore]:
    """A lease table made before the leaseOwner GSI (bootstrap before issue 18)."""
    if request.param == "memory":
        yield MemoryLeaseStore(owner_index=False)
        return
    async with AwsClients(lake) as clients:
        db = await clients.dynamodb()
        await db.create_table(
            TableName="leases-before-the-index",
            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoDbLeaseStore(db, "leases-before-the-index")


async def test_a_table_without_the_owner_index_is_a_config_error(
    without_index: LeaseStore,
) -> None:
    """Not a PermanentError to back off from forever: the worker exits 2 on it."""
    assert await without_index.create(new())
    assert await without_index.list_leases()  # the table itself works
    with pytest.raises(ConfigError, match=r"no usable leaseOwner-index GSI.*run bootstrap"):
        await without_index.list_owned("w1")
    with pytest.raises(PermanentError) as refused:  # a consistent read: refused as such
        await without_index.list_owned("w1", consistent=True)
    assert not isinstance(refused.value, ConfigError)
