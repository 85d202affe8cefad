"""A leader gives leases only to workers that are beating now, and takes back a lease its
worker did not pick up (issue 18: a lease unowned longer than a failover time outside a crash,
found in bench/leases.py's -10 workers scenario: a new leader handed leases over to workers
killed 7-9 s earlier, whose last beat still looked live, and each waited a failover on its
counter)."""

from __future__ import annotations

from dataclasses import replace

from tests.stream.conftest import FAILOVER
from tests.stream.test_leader_safety import FakeClock
from tributary_stream.assignment import BalanceConfig
from tributary_stream.leader import LeaderConfig, LeaderCoordinator, Load
from tributary_stream.lease import Checkpoint, Lease
from tributary_stream.testing import MemoryFleetStore, MemoryLeaseStore

KEY = "shardId-000000000000"


def fleet_of(
    clock: FakeClock, *names: str
) -> tuple[MemoryLeaseStore, MemoryFleetStore, dict[str, LeaderCoordinator]]:
    store, fleet = MemoryLeaseStore(), MemoryFleetStore()
    config = LeaderConfig("", FAILOVER, BalanceConfig(by_load=False))
    coordinators = {
        name: LeaderCoordinator(replace(config, worker_id=name), store, fleet, clock)
        for name in names
    }
    return store, fleet, coordinators


async def test_a_worker_whose_beat_is_older_than_half_a_failover_is_given_no_lease() -> None:
    """b (the one with the fewest leases, first by name) is killed: 0.6 failover later its last
    beat is not yet stale (a failover), but no lease goes to it."""
    clock = FakeClock()
    store, fleet, w = fleet_of(clock, "b", "y", "z")
    await w["b"].heartbeat(Load())
    await w["y"].heartbeat(Load())
    await w["z"].cycle(Load())  # elected (a cold start's leader waits a cycle)
    assert fleet.leader == "z"
    clock.t += 0.6 * FAILOVER  # b is killed meanwhile; y beats on
    await w["y"].heartbeat(Load())
    assert await store.create(Lease(KEY, None, 0, Checkpoint.TRIM_HORIZON))
    await w["z"].cycle(Load())
    assert [to for _, to in w["z"].last.assigned] in (["y"], ["z"])
    assert store.leases[KEY].owner in ("y", "z")


async def test_a_lease_its_worker_does_not_pick_up_is_reassigned_before_a_failover() -> None:
    """b beats but never takes the lease the leader gave it (its consumer is stuck, or it died
    right after its beat): after the pickup timeout (half a failover), well before the counter
    would expire, the lease goes to another worker."""
    clock = FakeClock()
    store, _, w = fleet_of(clock, "b", "y", "z")
    for name in ("b", "y"):
        await w[name].heartbeat(Load())
    await w["z"].cycle(Load())
    assert await store.create(Lease(KEY, None, 0, Checkpoint.TRIM_HORIZON))
    await w["z"].cycle(Load())
    assert [to for _, to in w["z"].last.assigned] == ["b"]
    assert w["z"].last.reassigned == []  # a first assignment, not a pickup timeout
    for _ in range(2):
        clock.t += 0.3 * FAILOVER
        for name in ("b", "y"):
            await w[name].heartbeat(Load())
        await w["z"].cycle(Load())
    assert clock.t - 1000.0 < FAILOVER
    assert [to for _, to in w["z"].last.assigned] in (["y"], ["z"])
    assert w["z"].last.reassigned == w["z"].last.assigned  # counted as a pickup timeout
    assert store.leases[KEY].owner in ("y", "z")


async def test_a_new_leader_frees_a_dead_workers_lease_once_its_beat_is_stale() -> None:
    """The leader x and the worker k are killed together; k beat half a failover after x last
    renewed the lock, so when z is elected k still looks live. Once k's beat is a failover old,
    its lease (whose counter z never saw move) is free at once, not a failover later."""
    clock = FakeClock()
    store, fleet, w = fleet_of(clock, "k", "x", "z")
    assert await store.create(Lease(KEY, None, 0, Checkpoint.TRIM_HORIZON))
    assert await store.take(store.leases[KEY], "k") is not None
    await w["x"].cycle(Load())
    assert fleet.leader == "x"
    await w["z"].heartbeat(Load())
    await w["z"].cycle(Load())  # z sees the lock as x left it
    clock.t += 0.5 * FAILOVER
    await w["k"].heartbeat(Load())  # k's last beat; x and k are killed now
    await w["z"].heartbeat(Load())
    await w["z"].cycle(Load())
    clock.t += 0.51 * FAILOVER
    await w["z"].heartbeat(Load())
    await w["z"].cycle(Load())  # the lock unchanged for a failover: z leads
    assert fleet.leader == "z"
    assert store.leases[KEY].owner == "k"  # k beat half a failover ago: maybe alive
    clock.t += 0.5 * FAILOVER
    await w["z"].heartbeat(Load())
    await w["z"].cycle(Load())
    assert store.leases[KEY].owner == "z"


async def test_a_new_leader_does_not_rob_a_renewing_worker_whose_beats_fail() -> None:
    """k renews every failover / 3 but its heartbeat writes fail (its beat goes stale); x, the
    leader, dies and z is elected: k's lease, its counter moving, is not taken from it in z's
    first cycles (the beat shortcut waits until the counter has been still for a renewal)."""
    clock = FakeClock()
    store, fleet, w = fleet_of(clock, "k", "x", "z")
    assert await store.create(Lease(KEY, None, 0, Checkpoint.TRIM_HORIZON))
    held = await store.take(store.leases[KEY], "k")
    assert held is not None
    await w["k"].heartbeat(Load())  # k's only beat: every later one fails
    await w["x"].cycle(Load())
    assert fleet.leader == "x"
    await w["z"].heartbeat(Load())
    await w["z"].cycle(Load())  # z sees the lock as x left it; x dies now

    async def renew_k() -> None:
        nonlocal held
        assert held is not None
        held = await store.renew(held)
        assert held is not None, "k's lease was taken from it"

    step = FAILOVER / 4  # z's take cycle
    elected_at = None
    while clock.t - 1000.0 < 6 * FAILOVER:
        clock.t += step
        await renew_k()  # every failover / 4 (more often than failover / 3)
        await w["z"].heartbeat(Load())
        await w["z"].cycle(Load())
        if fleet.leader == "z" and elected_at is None:
            elected_at = clock.t
        if elected_at is not None and clock.t - elected_at >= 2 * step:
            break
    assert fleet.leader == "z"
    assert store.leases[KEY].owner == "k"


class StaleScanStore(MemoryLeaseStore):
    """The leader's eventually consistent Scan answers from `stale` while it is set."""

    stale: list[Lease] | None = None
    refused: int = 0  # takes refused (fenced by the counter)

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        taken = await super().take(lease, owner)
        self.refused += taken is None
        return taken

    async def list_leases(self, consistent: bool = True) -> list[Lease]:
        if not consistent and self.stale is not None:
            return list(self.stale)
        return await super().list_leases(consistent)


async def test_a_lease_taken_in_time_but_scanned_stale_after_the_timeout_stays_put() -> None:
    """b takes the lease the leader gave it; the leader's lagging Scan still shows it as given,
    past the pickup timeout: the reassignment is refused by the counter, b keeps it."""
    clock = FakeClock()
    store = StaleScanStore()
    fleet = MemoryFleetStore()
    config = LeaderConfig("", FAILOVER, BalanceConfig(by_load=False))
    w = {n: LeaderCoordinator(replace(config, worker_id=n), store, fleet, clock) for n in "byz"}
    for name in ("b", "y"):
        await w[name].heartbeat(Load())
    await w["z"].cycle(Load())
    assert await store.create(Lease(KEY, None, 0, Checkpoint.TRIM_HORIZON))
    await w["z"].cycle(Load())
    assert [to for _, to in w["z"].last.assigned] == ["b"]
    store.stale = await store.list_leases()  # the Scan stops seeing writes from here on
    assert await store.take(store.leases[KEY], "b") is not None  # b picks it up in time
    for _ in range(2):
        clock.t += 0.3 * FAILOVER
        for name in ("b", "y"):
            await w[name].heartbeat(Load())
        await w["z"].cycle(Load())
    assert store.refused == 1  # the reassignment to y or z was tried and fenced out
    assert w["z"].last.assigned == []
    assert store.leases[KEY].owner == "b"


async def test_a_lease_nobody_picks_up_is_reassigned_with_a_growing_wait() -> None:
    """The owner index lags longer than the pickup timeout (throttled, say): no worker takes
    the lease. The leader reassigns it after half a failover, then waits twice as long each
    time, instead of bouncing it between workers every half failover."""
    clock = FakeClock()
    _, _, w = fleet_of(clock, "b", "y", "z")
    store = w["z"]._store
    for name in ("b", "y"):
        await w[name].heartbeat(Load())
    await w["z"].cycle(Load())
    assert await store.create(Lease(KEY, None, 0, Checkpoint.TRIM_HORIZON))
    reassigned = 0
    while clock.t - 1000.0 < 4 * FAILOVER:
        for name in ("b", "y"):
            await w[name].heartbeat(Load())
        await w["z"].cycle(Load())
        reassigned += len(w["z"].last.reassigned)
        clock.t += FAILOVER / 4
    assert 1 <= reassigned <= 3  # at 0.5, 1.5 and 3.5 failovers (every 0.5: 7)
