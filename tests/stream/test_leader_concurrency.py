"""A leader cycle on 1,000 free leases at 10 ms per DynamoDB request, in simulated time
(bench/leases.py's SimLoop and metered stores): its takes run LEASE_CONCURRENCY at once, so
all 1,000 are made within the 2/3 of the failover time it writes for after its lock renewal
(one after another they need 10 s: it stopped part-way)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import leases  # type: ignore[import-not-found]  # noqa: E402
from tributary_stream.fleet import WorkerBeat  # noqa: E402
from tributary_stream.leader import LeaderConfig, LeaderCoordinator, Load  # noqa: E402
from tributary_stream.lease import Checkpoint, Lease  # noqa: E402


async def _cold_start(shards: int, workers: int) -> tuple[int, float]:
    fleet = leases.Fleet("leader", shards, leases.FakeClock(), {}, latency=False)
    for i in range(shards):
        await fleet.store.create(Lease(f"shardId-{i:012d}", None, 0, Checkpoint.TRIM_HORIZON))
    for w in range(workers):
        await fleet.fleet_store.beat(WorkerBeat(f"worker-{w:03d}", 1))
    leader = LeaderCoordinator(
        LeaderConfig("worker-000", 10.0), fleet.store, fleet.fleet_store, fleet.clock
    )
    await leader.cycle(Load())  # elected; the first cycle lets the fleet beat
    await fleet.run_until(2.5)
    for w in range(1, workers):
        await fleet.fleet_store.beat(WorkerBeat(f"worker-{w:03d}", 2))
    fleet.meter.latency_on, fleet.meter.latency = True, (0.01, 0.01)
    started = fleet.clock.t
    await leader.cycle(Load())
    return len(leader.last.assigned), fleet.clock.t - started


def test_one_leader_cycle_assigns_1000_free_leases_at_10_ms_per_request() -> None:
    assigned, took = leases.run(_cold_start(1000, 50))
    assert assigned == 1000
    assert took < 10.0 * 2 / 3
