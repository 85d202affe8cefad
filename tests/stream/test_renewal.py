"""Lease renewal runs on its own schedule: a lease table whose Scan (and owner-index Query)
and checkpoint are slow
(3× the renewal interval) costs a healthy worker no lease."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from tests.stream.conftest import FAILOVER, Harness, landed
from tests.stream.test_worker import fill
from tributary.dataset import DatasetRegistry
from tributary_stream.assignment import BalanceConfig
from tributary_stream.lease import Lease
from tributary_stream.testing import MemoryLeaseStore, MemoryStream

SLOW = 3 * FAILOVER / 3  # 3× the renewal interval (failover / 3)


class SlowLeaseStore(MemoryLeaseStore):
    """Scan and checkpoint take `SLOW` seconds once `slow` is set; renew stays fast."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = False

    async def list_leases(self, consistent: bool = True) -> list[Lease]:
        if self.slow:
            await asyncio.sleep(SLOW)
        return await super().list_leases(consistent)

    async def list_owned(self, owner: str, consistent: bool = False) -> list[str]:
        if self.slow:
            await asyncio.sleep(SLOW)
        return await super().list_owned(owner, consistent)

    async def checkpoint(
        self, lease: Lease, checkpoint: str, landed: Mapping[str, str]
    ) -> Lease | None:
        if self.slow:
            await asyncio.sleep(SLOW)
        return await super().checkpoint(lease, checkpoint, landed)


@pytest.mark.parametrize(
    "config",
    [
        {"assignment": "scan"},
        # by count: balancing by measured load may move a lease on purpose (a handoff, forced
        # when a's slow checkpoint outlasts the handoff timeout); this test is about renewals
        {"assignment": "leader", "balance": BalanceConfig(by_load=False)},
    ],
    ids=["scan", "leader"],
)
async def test_slow_scans_and_checkpoints_lose_no_lease(
    registry: DatasetRegistry, config: dict[str, object]
) -> None:
    """Worker a's path to the table is slow (its Scan and checkpoint take 3x the renewal
    interval); b's is not, so b sees at once any lease whose counter a stops moving."""
    fast = MemoryLeaseStore()
    slow = SlowLeaseStore()
    slow.leases = fast.leases  # one table, two connections to it
    h = Harness(registry, MemoryStream(4), store=slow, max_records=5, config=config)
    expected = fill(h.stream, 20)
    a = h.start("a")
    h.store = fast
    b = h.start("b")
    await h.wait_for(lambda: len(a.running) == 2 and len(b.running) == 2, within=15)
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected))
    owners = {lease.key: lease.owner for lease in fast.leases.values()}
    taken_before = h.metrics.total("LeasesTaken") + h.metrics.total("LeasesStolen")
    lost_before = h.metrics.total("LeasesLost")  # the balancing steals, before the test
    slow.slow = True
    for round_ in range(6):  # checkpoints keep coming while a's table is slow
        expected += fill(h.stream, 5, start=100 + round_ * 5)
        await asyncio.sleep(FAILOVER)
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=30)
    assert h.metrics.total("LeasesLost") == lost_before
    assert h.metrics.total("LeasesTaken") + h.metrics.total("LeasesStolen") == taken_before
    assert {lease.key: lease.owner for lease in fast.leases.values()} == owners
    slow.slow = False
    await h.stop_all()
    assert h.raw_lines() == landed(expected)


class LateAnswers(MemoryLeaseStore):
    """The next `late` renewals are applied, but their answer comes after the deadline."""

    late = 0

    async def renew(self, lease: Lease) -> Lease | None:
        renewed = await super().renew(lease)
        if self.late:
            self.late -= 1
            await asyncio.sleep(FAILOVER)  # 3x the renewal deadline
        return renewed


async def test_a_renewal_applied_but_answered_late_does_not_lose_the_lease(
    registry: DatasetRegistry,
) -> None:
    store = LateAnswers()
    h = Harness(registry, MemoryStream(1), store=store)
    expected = fill(h.stream, 5)
    worker = h.start()
    await h.wait_for(lambda: len(worker.running) == 1 and sum(h.raw_lines().values()) == 5)
    store.late = 1
    shard = "shardId-000000000000"
    await h.wait_for(lambda: h.metrics.total("RenewalFailures", shard=shard) == 1)
    counter = next(iter(store.leases.values())).counter
    await h.wait_for(lambda: next(iter(store.leases.values())).counter >= counter + 2)
    assert h.metrics.total("LeasesLost") == h.metrics.total("LeasesLost", shard=shard) == 0
    assert h.metrics.total("LeasesRestarted") == 0
    assert len(worker.running) == 1
    expected += fill(h.stream, 5, start=10)  # and the shard goes on
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 10)
    await h.stop(worker)
    assert h.raw_lines() == landed(expected)
