"""Which leases a worker should hold: the KCL 2.x lease-taking rules as pure decisions.

Expiry is never stored: a lease is expired when its counter has not changed for
`failover_time` as seen on this worker's own monotonic clock, so clock skew between workers
does not matter.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from tributary_stream.lease import Lease


@dataclass(slots=True)
class _Seen:
    counter: int
    owner: str | None
    since: float  # monotonic time the counter was first seen at this value


class LeaseObserver:
    """Remembers when each lease's counter last changed."""

    def __init__(self, failover_time: float) -> None:
        self.failover_time = failover_time
        self._seen: dict[str, _Seen] = {}

    def observe(self, leases: list[Lease], now: float) -> None:
        """Record a fresh listing of the table."""
        for lease in leases:
            seen = self._seen.get(lease.key)
            if seen is None or seen.counter != lease.counter or seen.owner != lease.owner:
                self._seen[lease.key] = _Seen(lease.counter, lease.owner, now)

    def knows(self, key: str) -> bool:
        """Whether a listing so far had `key`."""
        return key in self._seen

    def expired(self, lease: Lease, now: float) -> bool:
        """Owned, and its counter unchanged for `failover_time` (or never seen: not expired)."""
        seen = self._seen.get(lease.key)
        return (
            lease.owner is not None and seen is not None and now - seen.since >= self.failover_time
        )


def eligible(lease: Lease, by_key: dict[str, Lease]) -> bool:
    """Unfinished, and every parent finished (or gone from the table)."""
    if lease.finished:
        return False
    return all(p not in by_key or by_key[p].finished for p in lease.parents)


@dataclass(frozen=True, slots=True)
class Plan:
    """Leases to take this cycle (already-available ones, or one to steal)."""

    take: list[Lease]
    steal: bool


def plan_takes(
    me: str,
    leases: list[Lease],
    observer: LeaseObserver,
    now: float,
    max_steal: int = 1,
    max_leases: int | None = None,
) -> Plan:
    """Decide what `me` should take: free and expired leases up to the fair share (at most
    `max_leases`), else steal up to `max_steal` from the most loaded worker when it is over
    the share."""
    by_key = {lease.key: lease for lease in leases}
    active = [lease for lease in leases if eligible(lease, by_key)]
    live_owners = {
        lease.owner
        for lease in active
        if lease.owner is not None and not observer.expired(lease, now)
    }
    workers = live_owners | {me}
    target = math.ceil(len(active) / len(workers)) if active else 0
    if max_leases is not None:
        target = min(target, max_leases)
    mine = [lease for lease in active if lease.owner == me]
    want = target - len(mine)
    if want <= 0:
        return Plan([], steal=False)
    available = [
        lease
        for lease in active
        if lease.owner is None or (lease.owner != me and observer.expired(lease, now))
    ]
    if available:
        return Plan(available[:want], steal=False)
    load = Counter(lease.owner for lease in active if lease.owner is not None and lease.owner != me)
    if not load:
        return Plan([], steal=False)
    busiest, held = max(load.items(), key=lambda item: (item[1], item[0] or ""))
    if held <= target:
        return Plan([], steal=False)
    victims = [lease for lease in active if lease.owner == busiest]
    return Plan(victims[: min(max_steal, want, held - target)], steal=True)
