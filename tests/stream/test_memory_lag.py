"""The in-memory lease store's lags, as DynamoDB's: the owner index (a GSI) shows each write
after a random delay of at most `index_lag_s`, in order per lease; an eventually consistent
Scan returns each lease as it was up to `scan_lag_s` ago; consistent reads are never stale."""

from __future__ import annotations

import pytest

from tests.stream.test_leader_safety import FakeClock
from tributary_stream.lease import Checkpoint, Lease
from tributary_stream.testing import MemoryLeaseStore

KEYS = [f"shardId-{i:012d}" for i in range(50)]


async def filled(store: MemoryLeaseStore) -> None:
    for key in KEYS:
        assert await store.create(Lease(key, None, 0, Checkpoint.TRIM_HORIZON))


async def test_the_owner_index_lags_by_a_bounded_delay_in_order() -> None:
    clock = FakeClock()
    store = MemoryLeaseStore(clock=clock, index_lag_s=1.0, seed=7)
    await filled(store)
    for key in KEYS:
        assert await store.take(store.leases[key], "w1") is not None
    assert len(await store.list_owned("w1")) < len(KEYS)  # not all of it propagated yet
    clock.t += 0.5
    halfway = len(await store.list_owned("w1"))
    assert 0 < halfway < len(KEYS)
    clock.t += 0.5
    assert await store.list_owned("w1") == KEYS  # within the bound: every write is there
    for key in KEYS:  # moved to w2, then released: the index ends without an owner
        taken = await store.take(store.leases[key], "w2")
        assert taken is not None
        assert await store.release(taken)
    assert await store.list_owned("w1") == KEYS  # the index still shows w1 at first
    for _ in range(10):
        clock.t += 0.1
        w1, w2 = await store.list_owned("w1"), await store.list_owned("w2")
        assert not set(w1) & set(w2)
    assert await store.list_owned("w1") == await store.list_owned("w2") == []


async def test_an_eventually_consistent_scan_lags_and_a_consistent_one_does_not() -> None:
    clock = FakeClock()
    store = MemoryLeaseStore(clock=clock, scan_lag_s=1.0, seed=3)
    await filled(store)
    clock.t += 1.0
    for key in KEYS:
        assert await store.take(store.leases[key], "w1") is not None
    consistent = await store.list_leases()
    assert all(lease.owner == "w1" for lease in consistent)
    stale = await store.list_leases(consistent=False)
    assert len(stale) == len(KEYS)
    assert any(lease.owner is None for lease in stale)  # some rows as they were before
    clock.t += 0.5
    newer = await store.list_leases(consistent=False)
    assert any(lease.owner == "w1" for lease in newer)
    clock.t += 0.5
    assert await store.list_leases(consistent=False) == consistent  # the lag is bounded
    created = Lease("shardId-999999999999", None, 0, Checkpoint.TRIM_HORIZON)
    assert await store.create(created)
    clock.t += 1.0
    assert created in await store.list_leases(consistent=False)


def test_a_lag_needs_a_clock() -> None:
    with pytest.raises(ValueError, match="needs a clock"):
        MemoryLeaseStore(index_lag_s=1.0)
