"""Leader mode keeps today's safety (review of issue 18): a draining worker keeps its leases
until it releases them, a worker whose heartbeat writes fail keeps the leases it renews, and a
cold start creates leases at once, not after SHARD_SYNC_S."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tests.stream.conftest as stream_conftest
from tests.stream.conftest import FAILOVER, Harness
from tests.stream.test_worker import fill
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import TransientError
from tributary_stream.assignment import BalanceConfig
from tributary_stream.fleet import FleetView, WorkerBeat
from tributary_stream.leader import LeaderConfig, LeaderCoordinator, Load
from tributary_stream.lease import Checkpoint, Lease
from tributary_stream.testing import MemoryFleetStore, MemoryLeaseStore, MemoryStream


class SlowCheckpointFor(MemoryLeaseStore):
    """Checkpoints of `slow_owner` take 2 failover times (a slow drain, within the 5 s
    shutdown timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow_owner: str | None = None

    async def checkpoint(self, lease: Lease, checkpoint: str, landed: Mapping[str, str]) -> Any:
        if self.slow_owner is not None and lease.owner == self.slow_owner:
            await asyncio.sleep(2 * FAILOVER)
        return await super().checkpoint(lease, checkpoint, landed)


@pytest.mark.parametrize("mode", ["scan", "leader"])
async def test_a_slow_drain_after_sigterm_keeps_its_leases(
    registry: DatasetRegistry, mode: str
) -> None:
    """a drains for 2 failover times (renewals go on); nobody takes a's leases meanwhile."""
    store = SlowCheckpointFor()
    h = Harness(
        registry,
        MemoryStream(4),
        store=store,
        config={"balance": BalanceConfig(by_load=False), "assignment": mode},
    )
    fill(h.stream, 20)
    b = h.start("b")
    await h.wait_for(lambda: len(b.running) == 4)
    a = h.start("a")
    await h.wait_for(lambda: len(a.running) == 2 and len(b.running) == 2, within=10)
    await asyncio.sleep(FAILOVER)
    lost_before = h.metrics.total("LeasesLost")
    store.slow_owner = "a"
    fill(h.stream, 20, start=100)
    await asyncio.sleep(0.2)
    await h.stop(a)
    lost = h.metrics.total("LeasesLost") - lost_before
    await h.stop_all()
    assert lost == 0


class FailingBeatsFor(MemoryFleetStore):
    """The heartbeat writes of `failing` fail (a throttled fleet item, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: str | None = None

    async def beat(self, beat: WorkerBeat) -> FleetView:
        if beat.worker_id == self.failing:
            raise TransientError("fleet write throttled (fault injected)")
        return await super().beat(beat)


async def test_a_worker_whose_beats_fail_keeps_the_leases_it_renews(
    registry: DatasetRegistry,
) -> None:
    """a's heartbeat writes fail for 3 failover times while its renewals succeed: the leader b
    takes none of a's leases."""
    fleet = FailingBeatsFor()
    h = Harness(
        registry, MemoryStream(4), fleet=fleet, config={"balance": BalanceConfig(by_load=False)}
    )
    fill(h.stream, 20)
    b = h.start("b")
    await h.wait_for(lambda: len(b.running) == 4)
    a = h.start("a")
    await h.wait_for(lambda: len(a.running) == 2 and len(b.running) == 2, within=10)
    held = set(a.running)
    fleet.failing = "a"
    await asyncio.sleep(3 * FAILOVER)
    still = {k for k, lease in h.store.leases.items() if lease.owner == "a"}
    lost = h.metrics.total("LeasesLost")
    fleet.failing = None
    await h.stop_all()
    assert still == held
    assert lost == 0


async def test_a_cold_start_creates_leases_without_waiting_for_the_shard_sync(
    registry: DatasetRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Empty lease table, SHARD_SYNC_S 30 failover times: every shard is consumed within 3
    failover times (the worker that wins the leadership syncs at once)."""
    real = stream_conftest.WorkerConfig

    def config(**kw: Any) -> Any:
        return real(**{**kw, "shard_sync_s": 30 * FAILOVER})

    monkeypatch.setattr(stream_conftest, "WorkerConfig", config)
    h = Harness(registry, MemoryStream(2))
    fill(h.stream, 4)
    a = h.start("a")
    try:
        await h.wait_for(lambda: len(a.running) == 2, within=10 * FAILOVER)
    finally:
        await h.stop_all()


async def test_a_forced_handoff_while_the_old_owner_writes_lands_everything_once(
    registry: DatasetRegistry,
) -> None:
    """a's checkpoints outlast the handoff timeout while the leader moves two leases to b: the
    leader forces them (a new take token fences a out) and every record lands exactly once."""
    store = SlowCheckpointFor()
    h = Harness(
        registry, MemoryStream(4), store=store, config={"balance": BalanceConfig(by_load=False)}
    )
    expected = fill(h.stream, 20)
    a = h.start("a")
    await h.wait_for(lambda: len(a.running) == 4 and sum(h.raw_lines().values()) >= 80)
    store.slow_owner = "a"
    b = h.start("b")
    for r in range(10):
        expected += fill(h.stream, 3, start=100 + r * 3)
        await asyncio.sleep(FAILOVER / 4)
    await h.wait_for(lambda: len(b.running) >= 2, within=10)
    store.slow_owner = None
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=15)
    await h.stop_all()
    assert h.raw_lines() == Counter(expected)


async def test_a_mixed_fleet_of_scan_and_leader_workers_lands_everything_once(
    registry: DatasetRegistry,
) -> None:
    """A rolling upgrade: a (LEASE_ASSIGNMENT=scan, as older builds) and b (leader) share the
    lease table; every shard is consumed, everything lands exactly once, and a's stop hands
    its leases to b."""
    h = Harness(registry, MemoryStream(4), config={"assignment": "scan"})
    expected = fill(h.stream, 10)
    a = h.start("a")
    await h.wait_for(lambda: len(a.running) == 4)
    h.config = {"assignment": "leader"}
    b = h.start("b")
    expected += fill(h.stream, 10, start=10)
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=15)
    await h.stop(a)
    expected += fill(h.stream, 10, start=20)
    await h.wait_for(lambda: len(b.running) == 4, within=10)
    await h.wait_for(lambda: sum(h.raw_lines().values()) >= len(expected), within=15)
    await h.stop_all()
    assert h.raw_lines() == Counter(expected)


class DrainingBeats(MemoryFleetStore):
    """Sets `draining[worker]` once that worker beats as draining (it began to stop)."""

    def __init__(self) -> None:
        super().__init__()
        self.draining: dict[str, asyncio.Event] = {}

    async def beat(self, beat: WorkerBeat) -> FleetView:
        view = await super().beat(beat)
        if beat.draining:
            self.draining.setdefault(beat.worker_id, asyncio.Event()).set()
        return view


class LateTakesFor(MemoryLeaseStore):
    """The leader's takes on behalf of `late_owner` land only after it beat as draining (the
    leader planned on a fleet row read before it stopped; its writes were slow)."""

    def __init__(self, fleet: DrainingBeats, index_lag_s: float = 0.0) -> None:
        super().__init__(SystemClock() if index_lag_s else None, index_lag_s=index_lag_s)
        self.fleet = fleet
        self.late_owner: str | None = None
        self.pending = asyncio.Event()
        self.landed = asyncio.Event()

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        if owner != self.late_owner or lease.owner == owner:  # not the worker's own pickup
            return await super().take(lease, owner)
        self.pending.set()
        await self.fleet.draining.setdefault(owner, asyncio.Event()).wait()
        await asyncio.sleep(0.2)  # after its stop released what it owned
        taken = await super().take(lease, owner)
        self.landed.set()
        return taken


@pytest.mark.parametrize("index_lag_s", [0.0, 0.3])
async def test_a_take_that_lands_while_a_worker_drains_is_released_before_it_leaves(
    registry: DatasetRegistry, index_lag_s: float
) -> None:
    """c dies; the leader a takes c's lease for b, but the write lands after b began to stop
    (after b's stop released what it owned): b releases it before leaving, so a stopped
    fleet leaves no lease owned by a worker that is gone — also while the owner index lags
    (b reads the table itself)."""
    fleet = DrainingBeats()
    store = LateTakesFor(fleet, index_lag_s)
    h = Harness(
        registry,
        MemoryStream(4),
        store=store,
        fleet=fleet,
        config={"balance": BalanceConfig(by_load=False)},
    )
    fill(h.stream, 5)
    a = h.start("a")
    await h.wait_for(lambda: len(a.running) == 4)
    b = h.start("b")
    c = h.start("c")
    await h.wait_for(lambda: len(a.running) == 2 and len(b.running) == len(c.running) == 1)
    store.late_owner = "b"
    await h.kill(c)
    await asyncio.wait_for(store.pending.wait(), 10 * FAILOVER)  # the leader gives c's to b
    await h.stop(b)
    await asyncio.wait_for(store.landed.wait(), 5)
    assert not [k for k, lease in store.leases.items() if lease.owner == "b"]
    await h.stop_all()
    assert all(lease.owner is None for lease in store.leases.values())


class HandoffsTo(SlowCheckpointFor):
    """Records the handoffs asked of owners to `to` (checkpoints of `slow_owner` are slow)."""

    def __init__(self) -> None:
        super().__init__()
        self.to: str | None = None
        self.requested = asyncio.Event()

    async def request_handoff(self, lease: Lease, to: str) -> bool:
        done = await super().request_handoff(lease, to)
        if done and to == self.to:
            self.requested.set()
        return done


async def test_a_handoff_to_a_worker_that_stops_is_withdrawn(registry: DatasetRegistry) -> None:
    """The leader a asks itself to hand two leases to the newcomer b, and a's final
    checkpoints take 2 failover times; b stops meanwhile: b withdraws the requests, so a
    keeps (restarts) those leases, and none is ever owned by b once it is gone."""
    store = HandoffsTo()
    h = Harness(
        registry, MemoryStream(4), store=store, config={"balance": BalanceConfig(by_load=False)}
    )
    fill(h.stream, 20)
    a = h.start("a")
    await h.wait_for(lambda: len(a.running) == 4)
    store.slow_owner, store.to = "a", "b"
    fill(h.stream, 20, start=100)
    b = h.start("b")
    await asyncio.wait_for(store.requested.wait(), 10 * FAILOVER)
    await h.stop(b)
    owned_by_b: set[str] = set()
    for _ in range(round(4 * FAILOVER / 0.02)):  # past a's slow checkpoints and release
        owned_by_b |= {k for k, lease in store.leases.items() if lease.owner == "b"}
        await asyncio.sleep(0.02)
    store.slow_owner = None
    await h.wait_for(lambda: len(a.running) == 4, within=10)
    await h.stop_all()
    assert not owned_by_b
    assert all(lease.owner is None for lease in store.leases.values())


async def test_the_only_worker_releases_its_own_takes_the_lagging_index_hides(
    registry: DatasetRegistry,
) -> None:
    """A leader that took leases for itself and stops before the owner index shows them
    releases them all (it reads the table, not the index)."""
    store = MemoryLeaseStore(SystemClock(), index_lag_s=0.5)
    h = Harness(registry, MemoryStream(4), store=store)
    fill(h.stream, 5)
    h.start("a")
    await h.wait_for(lambda: any(lease.owner == "a" for lease in store.leases.values()))
    await h.stop_all()
    assert all(lease.owner is None for lease in store.leases.values())


class FakeClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t


class SlowTakes(MemoryLeaseStore):
    """Each take costs a quarter of the failover time on `clock`; records when each landed."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.taken_at: list[float] = []

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        self.clock.t += FAILOVER / 4
        self.taken_at.append(self.clock.t)
        return await super().take(lease, owner)


async def test_a_leader_stops_assigning_once_its_lock_may_have_failed_over() -> None:
    """A cold start with 8 free leases and takes that each take a quarter of the failover time:
    the leader writes nothing once another worker may have claimed its lock (the failover time
    after its last renewal); the rest waits for its next cycle."""
    clock = FakeClock()
    store = SlowTakes(clock)
    for i in range(8):
        assert await store.create(Lease(f"shardId-{i:012d}", None, 0, Checkpoint.TRIM_HORIZON))
    fleet = MemoryFleetStore()
    config = LeaderConfig("a", FAILOVER, BalanceConfig(by_load=False))
    a = LeaderCoordinator(config, store, fleet, clock)
    b = LeaderCoordinator(replace(config, worker_id="b"), store, fleet, clock)
    await a.cycle(Load())  # elected; a cold start's leader waits a cycle before assigning
    await b.cycle(Load())
    assert fleet.leader == "a"
    renewed = clock.t
    await a.cycle(Load())  # renews the lock, then assigns
    assert store.taken_at
    assert max(store.taken_at) - renewed < FAILOVER
    assert len(a.last.assigned) < 8
