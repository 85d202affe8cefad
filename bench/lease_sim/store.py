"""The production in-memory lease and fleet stores, each request charged as DynamoDB would
charge it (dynamo.Meter) and taking its simulated latency."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from lease_sim.clock import FakeClock
from lease_sim.constants import INDEX_LAG_S, SCAN_LAG_S
from lease_sim.dynamo import Meter, fleet_size, index_writes, lease_size
from tributary_stream.fleet import FleetView, WorkerBeat
from tributary_stream.lease import Lease
from tributary_stream.testing import MemoryFleetStore, MemoryLeaseStore

T = TypeVar("T")


class MeteredLeaseStore(MemoryLeaseStore):
    """The production memory store, charged as DynamoDB would charge it."""

    def __init__(self, meter: Meter, fleet: MeteredFleetStore, clock: FakeClock) -> None:
        # the production store's own GSI and eventually consistent Scan lags
        super().__init__(clock=clock, index_lag_s=INDEX_LAG_S, scan_lag_s=SCAN_LAG_S, seed=18)
        self.meter = meter
        self.fleet = fleet
        self._sizes: dict[str, int] = {}  # each item's size, kept as it is written
        self.owner_changes: list[float] = []  # when the owner changed to another worker
        self._sim_clock = clock

    def _clock_t(self) -> float:
        return self._sim_clock.t

    def _size(self, key: str) -> int:
        lease = self.leases.get(key)
        if lease is None:
            return 0
        if key not in self._sizes:
            self._sizes[key] = lease_size(lease)
        return self._sizes[key]

    def _charge(self, op: str, key: str, before: Lease | None) -> None:
        cached = self._sizes.pop(key, None)
        old = 0 if before is None else cached if cached is not None else lease_size(before)
        after = self.leases.get(key)
        if after is not None and after.owner and (before is None or before.owner != after.owner):
            self.owner_changes.append(self._clock_t())
        new = self._size(key) if after is not None else 0
        self.meter.write(op, max(old, new), index_writes(before, after))

    async def _write(self, op: str, key: str, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One write request on `key`: its way there, the store's `call`, the charge (the item
        as it was before and after), the way back."""
        delay = await self.meter.go()
        before = self.leases.get(key)
        result = await call(*args)
        self._charge(op, key, before)
        await self.meter.back(delay)
        return result

    async def list_leases(self, consistent: bool = True) -> list[Lease]:
        nbytes = sum(self._size(key) for key in self.leases) + fleet_size(self.fleet.view())
        delay = await self.meter.go(max(1, math.ceil(nbytes / (1 << 20))))
        self.meter.read("Scan", nbytes, consistent)
        rows = await super().list_leases(consistent)
        await self.meter.back(delay)
        return rows

    async def list_owned(self, owner: str, consistent: bool = False) -> list[str]:
        delay = await self.meter.go()
        owned = await super().list_owned(owner, consistent)
        # KEYS_ONLY: an index item is leaseKey + leaseOwner
        nbytes = sum(8 + len(key) + 10 + len(owner) for key in owned)
        self.meter.read("Query(leaseOwner-index)", nbytes, False)
        await self.meter.back(delay)
        return owned

    async def get(self, key: str) -> Lease | None:
        delay = await self.meter.go()
        self.meter.read("GetItem", self._size(key), True)
        row = await super().get(key)
        await self.meter.back(delay)
        return row

    async def create(self, lease: Lease) -> bool:
        return await self._write("PutItem(create)", lease.key, super().create, lease)

    async def renew(self, lease: Lease) -> Lease | None:
        return await self._write("UpdateItem(renew)", lease.key, super().renew, lease)

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        return await self._write("UpdateItem(take)", lease.key, super().take, lease, owner)

    async def checkpoint(
        self, lease: Lease, checkpoint: str, landed: Mapping[str, str]
    ) -> Lease | None:
        op = "UpdateItem(checkpoint)"
        return await self._write(op, lease.key, super().checkpoint, lease, checkpoint, landed)

    async def release(self, lease: Lease) -> bool:
        return await self._write("UpdateItem(release)", lease.key, super().release, lease)

    async def request_handoff(self, lease: Lease, to: str) -> bool:
        op = "UpdateItem(handoff)"
        return await self._write(op, lease.key, super().request_handoff, lease, to)

    async def cancel_handoff(self, lease: Lease, to: str) -> bool:
        op = "UpdateItem(cancel handoff)"
        return await self._write(op, lease.key, super().cancel_handoff, lease, to)

    async def force_handoff(self, lease: Lease, to: str) -> Lease | None:
        return await self._write("UpdateItem(force)", lease.key, super().force_handoff, lease, to)

    async def delete(self, lease: Lease) -> bool:
        return await self._write("DeleteItem", lease.key, super().delete, lease)


class MeteredFleetStore(MemoryFleetStore):
    """The production memory fleet store, charged as UpdateItem on the `_fleet` row."""

    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self.meter = meter

    async def _write(self, op: str, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One UpdateItem on the `_fleet` row: charged max(before, after) of its size."""
        delay = await self.meter.go()
        before = fleet_size(self.view())
        result = await call(*args)
        self.meter.write(op, max(before, fleet_size(self.view())))
        await self.meter.back(delay)
        return result

    async def beat(self, beat: WorkerBeat) -> FleetView:
        return await self._write("UpdateItem(fleet beat)", super().beat, beat)

    async def claim_leader(self, me: str, seen: FleetView) -> bool:
        return await self._write("UpdateItem(fleet lock)", super().claim_leader, me, seen)

    async def renew_leader(self, me: str, counter: int) -> bool:
        return await self._write("UpdateItem(fleet lock)", super().renew_leader, me, counter)

    async def resign(self, me: str, counter: int) -> bool:
        return await self._write("UpdateItem(fleet lock)", super().resign, me, counter)

    async def forget(self, me: str, workers: list[str]) -> bool:
        return await self._write("UpdateItem(fleet forget)", super().forget, me, workers)

    async def leave(self, me: str) -> None:
        await self._write("UpdateItem(fleet leave)", super().leave, me)
