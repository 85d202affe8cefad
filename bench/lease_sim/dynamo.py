"""DynamoDB on-demand accounting: item sizes as DynamoDB counts them, and the request meter."""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field

from lease_sim.constants import LATENCY_S
from tributary_stream.fleet import FleetView
from tributary_stream.lease import Lease


def _n(value: float) -> int:
    digits = len(str(value).replace("-", "").replace(".", "").lstrip("0")) or 1
    return (digits + 1) // 2 + 1


def lease_size(lease: Lease) -> int:
    """The item's size as DynamoDB counts it (names as in DynamoDbLeaseStore)."""
    size = 8 + len(lease.key)  # leaseKey
    size += 12 + _n(lease.counter)  # leaseCounter
    size += 10 + len(lease.checkpoint)
    size += 28 + _n(lease.owner_switches)  # ownerSwitchesSinceCheckpoint
    size += 13 + 3 + sum(len(k) + len(v) + 1 for k, v in lease.landed.items())  # landedThrough
    if lease.owner:
        size += 10 + len(lease.owner)
    if lease.token:
        size += 10 + len(lease.token)
    if lease.parents:
        size += 14 + sum(map(len, lease.parents))
    if lease.throughput_bps or lease.records_per_s:
        size += 13 + _n(round(lease.throughput_bps)) + 16 + _n(round(lease.records_per_s, 1))
    if lease.handoff_to:
        size += 9 + len(lease.handoff_to)
    return size


def fleet_size(view: FleetView) -> int:
    """The `_fleet` row's size as DynamoDB counts it (0 while it does not exist)."""
    if not view.workers and view.leader is None:
        return 0
    size = 8 + 6 + 7 + 3  # leaseKey "_fleet", workers map
    for worker_id, beat in view.workers.items():
        size += len(worker_id) + 1 + 3 + 4 + _n(beat.beat) + 3 + 4 + 3 + 4 + 6 + 2
        size += sum(len(k) for k in beat.avoid) + (5 if beat.avoid else 0)
    if view.leader is not None:
        size += 8 + len(view.leader) + 13 + _n(view.leader_counter)
    return size


@dataclass
class Meter:
    """Requests and units, by operation, while `on`; every request takes LATENCY_S (when
    `latency_on`) of simulated time: half before the store applies it, half after."""

    on: bool = True
    requests: dict[str, int] = field(default_factory=dict)
    rcu: dict[str, float] = field(default_factory=dict)
    wcu: dict[str, float] = field(default_factory=dict)
    latency_on: bool = False
    rng: random.Random = field(default_factory=lambda: random.Random(1818))
    latency: tuple[float, float] = LATENCY_S

    async def go(self, requests: int = 1) -> float:
        """The request's way there (a switch point); returns its whole latency."""
        if not self.latency_on:
            return 0.0
        delay = sum(self.rng.uniform(*self.latency) for _ in range(requests))
        await asyncio.sleep(delay / 2)
        return delay

    async def back(self, delay: float) -> None:
        """The answer's way back."""
        if delay:
            await asyncio.sleep(delay / 2)

    def read(self, op: str, nbytes: int, consistent: bool, page: int = 1 << 20) -> None:
        pages = [page] * (nbytes // page) + ([nbytes % page] if nbytes % page else [])
        if not self.on:
            return
        units = sum(math.ceil(p / 4096) for p in pages) or 1
        self.requests[op] = self.requests.get(op, 0) + max(1, len(pages))
        self.rcu[op] = self.rcu.get(op, 0.0) + units * (1.0 if consistent else 0.5)

    def write(self, op: str, nbytes: int, index_writes: int = 0) -> None:
        if not self.on:
            return
        units = max(1, math.ceil(nbytes / 1024))
        self.requests[op] = self.requests.get(op, 0) + 1
        self.wcu[op] = self.wcu.get(op, 0.0) + units * (1 + index_writes)

    def reset(self) -> None:
        self.requests.clear()
        self.rcu.clear()
        self.wcu.clear()


def index_writes(before: Lease | None, after: Lease | None) -> int:
    """GSI writes of one table write (KEYS_ONLY on leaseOwner: only an owner change writes
    the index: one write to add or remove the item, two to move it)."""
    old = before.owner if before is not None else None
    new = after.owner if after is not None else None
    if old == new:
        return 0
    return 1 if old is None or new is None else 2
