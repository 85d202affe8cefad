"""The scenarios, in sequence on one fleet (cold start, steady state, +10, -10 killed, rolling
deploy), and what each did: convergence, moves against the minimum, unowned gaps, re-reads."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

from lease_sim.clock import FakeClock
from lease_sim.constants import FAILOVER, STEADY, WINDOW
from lease_sim.fleet import Fleet
from lease_sim.worker import SimWorker
from tributary_stream.assignment import BalanceConfig


@dataclass
class Scenario:
    """What one event did, for one algorithm."""

    name: str
    start: float  # the event (the last SIGTERM of a rolling deploy)
    first: float  # the first event (the first SIGTERM)
    end: float
    minimum: int  # lease moves any algorithm needs
    converged_s: float | None = None
    moves: int = 0
    max_gap_s: float = 0.0  # longest unconsumed time of a lease, crash leases left out
    gaps_over_failover: int = 0  # ... of those, longer than the failover time
    crash_gap_s: float = 0.0  # longest unconsumed time of a crash lease
    crash_leases: int = 0
    crash_over_2_failovers: int = 0  # crash leases unowned longer than twice the failover time
    reread: float = 0.0
    lost_draining: int = 0  # leases taken from a worker while it drained (SIGTERM)
    pickup_timeouts: int = 0  # leader: leases reassigned, their assignee not taking them in time
    owner_changes: int = 0  # the lease table's owner changed to another worker (any write)
    spread: int = 0  # max - min leases per worker at the end
    load_ratio: float = 0.0  # max worker load / mean at the end


def minimum_moves(fleet: Fleet, leaving: set[str], joining: int) -> int:
    """Leases that must move: those of leaving workers, plus what the rest must shed or gain
    to end within [floor, ceil] of leases / workers (the count-balanced minimum)."""
    live = [w for w in fleet.workers.values() if w.alive and w.id not in leaving]
    workers = len(live) + joining
    total = fleet.shards
    hi, lo = math.ceil(total / workers), total // workers
    consumed = {key for w in live for key in w.held}
    orphans = sum(1 for key in fleet.rates if key not in consumed)
    shed = sum(max(0, len(w.held) - hi) for w in live)
    gain = sum(max(0, lo - len(w.held)) for w in live) + joining * lo
    return max(orphans + shed, gain)


def settle(fleet: Fleet, scenario: Scenario) -> None:
    """Fill in what happened between the event and the end of its window."""
    moves = [t for t in fleet.moves if scenario.first <= t <= scenario.end]
    scenario.moves = len(moves)
    unconsumed = any(
        key for key in fleet.rates if not any(key in w.held for w in fleet.workers.values())
    )
    last = max(moves, default=scenario.start)
    live = [w for w in fleet.workers.values() if w.alive]
    counts = [len(w.held) for w in live]
    scenario.spread = max(counts) - min(counts)
    loads = [w.load().bytes_per_s for w in live]
    scenario.load_ratio = max(loads) / statistics.mean(loads)
    balanced = (  # by each algorithm's own rule: counts within one, or load within the band
        scenario.spread <= 1
        if fleet.algorithm == "scan"
        else scenario.load_ratio <= 1 + BalanceConfig().threshold
    )
    converged = balanced and not unconsumed
    scenario.converged_s = max(0.0, last - scenario.start) if converged else None
    gaps = [(length, crash) for end, length, crash in fleet.gaps if scenario.first <= end]
    gaps = [g for g in gaps if g[0] >= 0]
    fleet.gaps = [g for g in fleet.gaps if g[0] < scenario.first]
    scenario.max_gap_s = max((length for length, crash in gaps if not crash), default=0.0)
    scenario.crash_gap_s = max((length for length, crash in gaps if crash), default=0.0)
    scenario.gaps_over_failover = sum(
        1 for length, crash in gaps if not crash and length > FAILOVER
    )
    scenario.crash_leases = sum(1 for _, crash in gaps if crash)
    scenario.crash_over_2_failovers = sum(
        1 for length, crash in gaps if crash and length > 2 * FAILOVER
    )
    scenario.reread = sum(r for t, r in fleet.reread if scenario.first <= t <= scenario.end)
    scenario.lost_draining = sum(
        1 for t in fleet.lost_draining if scenario.first <= t <= scenario.end
    )
    scenario.pickup_timeouts = sum(
        1 for t in fleet.reassigned if scenario.first <= t <= scenario.end
    )
    scenario.owner_changes = sum(
        1 for t in fleet.store.owner_changes if scenario.first <= t <= scenario.end
    )


async def simulate(algorithm: str, shards: int, workers: int) -> tuple[Fleet, list[Scenario]]:
    rng = random.Random(1018)
    rates = {  # records/s per shard: skewed (lognormal), some shards 5x the median
        f"shardId-{i:012d}": round(rng.lognormvariate(math.log(100), 0.6), 1) for i in range(shards)
    }
    clock = FakeClock()
    fleet = Fleet(algorithm, shards, clock, rates)
    count = 0

    def spawn() -> SimWorker:
        nonlocal count
        count += 1
        worker = SimWorker(fleet, f"worker-{count:03d}")
        fleet.workers[worker.id] = worker
        return worker

    async def sampler() -> None:
        fleet.sample()
        fleet.at(clock.t + 1.0, sampler)

    fleet.at(0.0, sampler)
    scenarios = []
    # cold start
    cold = Scenario("cold start", 0.0, 0.0, WINDOW, shards)
    for _ in range(workers):
        spawn()
    await fleet.run_until(cold.end)
    settle(fleet, cold)
    scenarios.append(cold)
    # steady state: units per minute
    fleet.meter.reset()
    await fleet.run_until(cold.end + STEADY)
    steady = {
        "rcu": dict(fleet.meter.rcu),
        "wcu": dict(fleet.meter.wcu),
        "requests": dict(fleet.meter.requests),
        "minutes": STEADY / 60,
    }
    t = clock.t
    # +10 workers
    plus = Scenario("+10 workers", t, t, t + WINDOW, minimum_moves(fleet, set(), 10))
    for _ in range(10):
        spawn()
    await fleet.run_until(plus.end)
    settle(fleet, plus)
    scenarios.append(plus)
    # -10 workers, killed
    t = clock.t
    victims = rng.sample(sorted(w.id for w in fleet.workers.values() if w.alive), 10)
    minus = Scenario("-10 workers (kill)", t, t, t + WINDOW, minimum_moves(fleet, set(victims), 0))
    for victim in victims:
        fleet.workers[victim].kill()
    await fleet.run_until(minus.end)
    settle(fleet, minus)
    scenarios.append(minus)
    # rolling deploy: SIGTERM one task every 5 s, its replacement (a new id) started with it
    t = clock.t
    old = sorted(w.id for w in fleet.workers.values() if w.alive)
    for i, worker_id in enumerate(old):

        async def step(worker_id: str = worker_id) -> None:
            spawn()
            await fleet.workers[worker_id].sigterm()

        fleet.at(t + 5.0 * i, step)
    last = t + 5.0 * (len(old) - 1)
    deploy = Scenario("rolling deploy", last, t, last + WINDOW, shards)
    await fleet.run_until(deploy.end)
    settle(fleet, deploy)
    scenarios.append(deploy)
    fleet.steady = steady
    await fleet.close()
    return fleet, scenarios
