"""Which worker should hold which lease: the leader's decisions as a pure function (KCL 3.x).

Leases with no live owner go to the least loaded live worker; then leases move, by graceful
handoff, from the most to the least loaded worker until every worker is within `threshold` of
the fleet mean (by load: each lease's recent bytes/s; or by count, the KCL 2.x rule, as a
setting). Dampening: a worker gives away at most `dampening` of its load above the mean per
cycle (at least one lease while it is above the band), and a move must shrink the gap between
the two workers, so the fleet settles instead of trading leases back and forth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from tributary_stream.coordinator import eligible
from tributary_stream.lease import Lease


@dataclass(frozen=True, slots=True)
class BalanceConfig:
    """How the leader balances."""

    by_load: bool = True  # False: by lease count (KCL 2.x's target ceil(leases / workers))
    threshold: float = 0.1  # a worker may be this fraction above (or below) the fleet mean
    dampening: float = 0.6  # of a worker's load above the mean, the most moved per cycle
    max_leases: int | None = None  # maxLeasesForWorker


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the leader does this cycle."""

    assign: list[tuple[Lease, str]]  # free or expired: take on behalf of the worker
    handoff: list[tuple[Lease, str]]  # ask the owner to hand it over


def weights(leases: Iterable[Lease], by_load: bool) -> dict[str, float]:
    """Each lease's weight: its bytes/s (a lease with none yet weighs the mean of the
    others, or 1), or 1 when balancing by count."""
    leases = list(leases)
    if not by_load:
        return {lease.key: 1.0 for lease in leases}
    known = [lease.throughput_bps for lease in leases if lease.throughput_bps > 0]
    default = sum(known) / len(known) if known else 1.0
    return {lease.key: lease.throughput_bps or default for lease in leases}


def plan_assignment(
    leases: list[Lease],
    workers: Iterable[str],
    expired: Callable[[Lease], bool],
    config: BalanceConfig,
    avoid: Mapping[str, frozenset[str]] | None = None,
) -> Assignment:
    """Decide this cycle's takes (on behalf of workers) and handoffs for live `workers`;
    `avoid[w]`: leases worker w gave up for a cool-down, never assigned to it."""
    avoid = avoid or {}
    live = sorted(set(workers))
    if not live:
        return Assignment([], [])
    by_key = {lease.key: lease for lease in leases}
    active = [lease for lease in leases if eligible(lease, by_key)]
    weight = weights(active, config.by_load)
    cap = config.max_leases if config.max_leases is not None else math.inf
    load = dict.fromkeys(live, 0.0)
    count = dict.fromkeys(live, 0)
    movable: dict[str, list[Lease]] = {w: [] for w in live}
    free: list[Lease] = []
    for lease in active:
        if lease.owner is None or expired(lease):
            free.append(lease)
            continue
        holder = lease.handoff_to if lease.handoff_to in load else lease.owner
        if holder not in load:
            continue  # a live owner outside the fleet row: leave it alone
        load[holder] += weight[lease.key]
        count[holder] += 1
        if holder == lease.owner:
            movable[holder].append(lease)

    def measure(w: str) -> tuple[float, int, str]:
        return (load[w] if config.by_load else count[w], count[w], w)

    # A free lease goes, among the workers it fits on (staying within the band above the fleet
    # mean), to the one with the fewest leases: a worker that just joined fills up first, so
    # leases released in a rolling deploy land on fresh workers rather than on ones stopping
    # next (which would move them twice); if it fits nowhere, to the least loaded.
    upper = sum(weight.values()) / len(live) * (1 + config.threshold)
    assign: list[tuple[Lease, str]] = []
    for lease in sorted(free, key=lambda item: (-weight[item.key], item.key)):
        open_ = [w for w in live if count[w] < cap]
        if not open_:
            break  # every worker at maxLeasesForWorker
        room = [w for w in open_ if lease.key not in avoid.get(w, ())]
        if not room:
            continue  # avoided by every worker with room: the lighter ones may still go
        size = weight[lease.key]
        fits = [w for w in room if load[w] + size <= upper] if config.by_load else []
        to = min(fits, key=lambda w: (count[w], load[w], w)) if fits else min(room, key=measure)
        assign.append((lease, to))
        load[to] += weight[lease.key]
        count[to] += 1
    if assign:  # free leases went to the least loaded: let the fleet settle before moving more
        return Assignment(assign, [])
    return Assignment(assign, _balance(live, load, count, movable, weight, config, cap, avoid))


def _balance(
    live: list[str],
    load: dict[str, float],
    count: dict[str, int],
    movable: dict[str, list[Lease]],
    weight: dict[str, float],
    config: BalanceConfig,
    cap: float,
    avoid: Mapping[str, frozenset[str]],
) -> list[tuple[Lease, str]]:
    """Handoffs from the most to the least loaded until every worker is within the band."""
    value = load if config.by_load else {w: float(c) for w, c in count.items()}
    total = sum(value.values())
    mean = total / len(live)
    if config.by_load:
        upper, lower = mean * (1 + config.threshold), mean * (1 - config.threshold)
    else:
        upper, lower = float(math.ceil(mean)), float(math.floor(mean))
    budget = {
        w: max(0.0, value[w] - mean) * (config.dampening if config.by_load else 1.0) for w in live
    }
    moved = dict.fromkeys(live, 0.0)
    handoffs: list[tuple[Lease, str]] = []
    done: set[str] = set()
    for _ in range(sum(len(m) for m in movable.values())):
        donors = [w for w in live if w not in done and movable[w]]
        takers = [w for w in live if count[w] < cap]
        if not donors or not takers:
            break
        donor = max(donors, key=lambda w: (value[w], w))
        taker = min(takers, key=lambda w: (value[w], w))
        if donor == taker or (value[donor] <= upper and value[taker] >= lower):
            break
        gap = value[donor] - value[taker]
        over_budget = moved[donor] > 0 and moved[donor] >= budget[donor]
        fits = [
            lease
            for lease in movable[donor]
            if _w(lease, weight, config) < gap - 1e-9
            and (config.by_load or value[donor] - 1 >= lower)
            and lease.key not in avoid.get(taker, ())
        ]
        if over_budget or not fits:
            done.add(donor)
            continue
        lease = min(fits, key=lambda item: (abs(_w(item, weight, config) - gap / 2), item.key))
        size = _w(lease, weight, config)
        movable[donor].remove(lease)
        handoffs.append((lease, taker))
        value[donor] -= size
        value[taker] += size
        count[donor] -= 1
        count[taker] += 1
        moved[donor] += size
    return handoffs


def _w(lease: Lease, weight: dict[str, float], config: BalanceConfig) -> float:
    return weight[lease.key] if config.by_load else 1.0
