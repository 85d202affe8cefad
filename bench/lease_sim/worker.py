"""A simulated worker: the Worker's lease management (take, renew, checkpoint, shard sync,
handoff, SIGTERM drain, kill -9) on the simulated fleet, without the record processing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lease_sim.constants import (
    CHECKPOINT_S,
    DRAIN_S,
    FAILOVER,
    HANDOFF_S,
    LEASE_CONCURRENCY,
    RECORD_BYTES,
    SHARD_SYNC_S,
)
from lease_sim.fleet import Fleet
from tributary_stream.assignment import BalanceConfig
from tributary_stream.concurrency import bounded
from tributary_stream.coordinator import LeaseObserver, eligible, plan_takes
from tributary_stream.leader import LeaderConfig, LeaderCoordinator, Load
from tributary_stream.lease import Checkpoint, Lease


class SimWorker:
    """A worker's lease management, as the Worker does it, without the record processing."""

    def __init__(self, fleet: Fleet, worker_id: str) -> None:
        self.fleet = fleet
        self.id = worker_id
        self.alive = True
        self.draining = False
        self.handing: set[str] = set()  # consumers stopping for a handoff
        self.finishing: set[str] = set()  # ... whose last checkpoint and release are in flight
        self.held: dict[str, Lease] = {}
        self.observer = LeaseObserver(FAILOVER)
        self.leader = (
            LeaderCoordinator(
                LeaderConfig(worker_id, FAILOVER, BalanceConfig(), concurrency=LEASE_CONCURRENCY),
                fleet.store,
                fleet.fleet_store,
                fleet.clock,
            )
            if fleet.algorithm == "leader"
            else None
        )
        now = fleet.clock.t
        phase = fleet.rng.uniform(0, 1)
        take_every = FAILOVER / (4 if self.leader is not None else 2)
        self._every(now + phase, take_every, self.take)
        self._every(now, FAILOVER / 3, self.renew)  # Worker.run starts renewals (+ beat) first
        self._every(now + fleet.rng.uniform(0, CHECKPOINT_S), CHECKPOINT_S, self.checkpoint)
        if self.leader is None:  # sync_shards on every worker, at once (with a leader: the leader)
            self._every(now + phase, SHARD_SYNC_S, self.sync)
        self._last_sync = float("-inf")

    def _every(self, first: float, period: float, step: Callable[[], Any]) -> None:
        async def tick() -> None:
            if not self.alive:
                return
            await step()
            self.fleet.at(self.fleet.clock.t + period, tick)

        self.fleet.at(first, tick)

    def _rates(self, key: str) -> tuple[float, float]:
        rps = self.fleet.rates[key]
        return rps * RECORD_BYTES, rps

    def load(self) -> Load:
        bps = sum(self._rates(k)[0] for k in self.held)
        rps = sum(self._rates(k)[1] for k in self.held)
        return Load(bps, rps, len(self.held))

    def start(self, lease: Lease) -> None:
        if not self.alive or lease.key in self.held:  # killed while the take was in flight
            return
        self.held[lease.key] = lease
        self.fleet.started(lease.key, self.id, lease)

    def drop(self, key: str, crash: bool = False, at: float | None = None) -> None:
        if self.held.pop(key, None) is None:
            return
        self.handing.discard(key)
        self.fleet.stopped(key, self.id, crash, at)

    def _update(self, key: str, **changes: Any) -> None:
        """A held lease's counter or checkpoint, as a request returned it (requests of one
        worker run concurrently: only the changed field, on the lease as it is now)."""
        if key in self.held:
            self.held[key] = replace(self.held[key], **changes)

    def lost(self, key: str) -> None:
        """A renewal or checkpoint refused: another worker took the lease."""
        if self.draining:
            self.fleet.lost_draining.append(self.fleet.clock.t)
        self.drop(key)

    async def hand_off(self, key: str, row: Lease) -> bool:
        """As Worker._hand_off: the consumer stops; HANDOFF_S later (its final flush and
        checkpoint) reap releases to the new owner, with the counter its renewals reached."""
        lease = self.held[key]
        to = row.handoff_to
        if not to or to == self.id or row.token != lease.token:
            return False
        if key in self.handing:
            return True
        self.handing.add(key)

        async def release() -> None:
            held = self.held.get(key)
            if held is None or not self.alive:
                return
            stopped_at = self.fleet.clock.t  # the consumer stops reading here
            self.finishing.add(key)  # as Worker: no renewal once the consumer's task is done
            done = await self.fleet.store.checkpoint(held, self._position(stopped_at), {})
            held = self.held.get(key)
            if done is not None and held is not None and self.alive:
                lease = replace(done, counter=held.counter, handoff_to=to)
                await self.fleet.store.release(lease)
            self.finishing.discard(key)
            self.drop(key, at=stopped_at)

        self.fleet.at(self.fleet.clock.t + HANDOFF_S, release)
        return True

    def _position(self, at: float | None = None) -> str:
        return str(int((self.fleet.clock.t if at is None else at) * 1000))

    async def renew(self) -> None:
        """As Worker.renew: every held lease at once, then the beat."""

        async def one(key: str, lease: Lease) -> None:
            if key in self.finishing:
                return
            bps, rps = self._rates(key)
            row = await self.fleet.store.renew(
                replace(lease, throughput_bps=bps, records_per_s=rps)
            )
            if not self.alive or key not in self.held:
                return
            if row is None:
                self.lost(key)  # the next renewal told us
                return
            self._update(key, counter=row.counter)
            await self.hand_off(key, row)

        await asyncio.gather(*(one(key, lease) for key, lease in list(self.held.items())))
        if self.leader is not None and self.alive:  # Worker._renew_loop: renew, then beat
            await self.leader.heartbeat(self.load())

    async def checkpoint(self) -> None:
        """Each consumer checkpoints on its own (all at once here)."""

        async def one(key: str, lease: Lease) -> None:
            if key in self.handing:
                return  # its last checkpoint comes with the release
            done = await self.fleet.store.checkpoint(lease, self._position(), {})
            if not self.alive or key not in self.held:
                return
            if done is None:
                self.lost(key)
            else:
                self._update(key, checkpoint=done.checkpoint)

        await asyncio.gather(*(one(key, lease) for key, lease in list(self.held.items())))

    async def sync(self) -> None:
        """As Worker.sync_shards: a lease for every shard without one (ListShards not counted:
        no DynamoDB request)."""
        self._last_sync = self.fleet.clock.t
        known = {lease.key for lease in await self.fleet.store.list_leases()}

        async def create(key: str) -> None:
            await self.fleet.store.create(Lease(key, None, 0, Checkpoint.TRIM_HORIZON))

        new = [key for key in self.fleet.rates if key not in known]
        await bounded(LEASE_CONCURRENCY, new, create)  # as Worker.sync_shards

    async def take(self) -> None:
        if self.draining:
            return
        if self.leader is not None:
            await self.take_assigned()
        else:
            await self.take_scanned()

    async def take_assigned(self) -> None:
        """As Worker.take_assigned."""
        assert self.leader is not None
        was_leader = self.leader.is_leader
        owned = await self.leader.cycle(self.load())
        self.fleet.reassigned += [self.fleet.clock.t] * len(self.leader.last.reassigned)
        if self.leader.is_leader and (
            not was_leader
            or not self.leader.leases
            or self.fleet.clock.t - self._last_sync >= SHARD_SYNC_S
        ):
            await self.sync()  # Worker.take_assigned: the leader syncs when elected, then
        for key in owned:
            if key in self.held:
                continue
            lease = await self.fleet.store.get(key)
            if lease is None or lease.finished or lease.owner != self.id:
                continue
            taken = await self.fleet.store.take(lease, self.id)
            if taken is not None:
                self.start(taken)

    async def take_scanned(self) -> None:
        """As Worker.take_scanned (today's algorithm)."""
        store = self.fleet.store
        leases = await store.list_leases()
        now = self.fleet.clock.t
        self.observer.observe(leases, now)
        by_key = {lease.key: lease for lease in leases}
        for lease in leases:
            if lease.owner == self.id and lease.key not in self.held and eligible(lease, by_key):
                retaken = await store.take(lease, self.id)
                if retaken is not None:
                    self.start(retaken)
        plan = plan_takes(self.id, leases, self.observer, now, 1)
        for lease in plan.take:
            if lease.key in self.held:
                continue
            taken = await store.take(lease, self.id)
            if taken is not None:
                self.start(taken)

    async def sigterm(self) -> None:
        """Worker.run after stop: beat as draining and resign (leader); DRAIN_S of draining,
        renewals going on; then checkpoint, release, leave the fleet."""
        self.draining = True
        if self.leader is not None:
            await self.leader.stop(set(self.held))

        async def drained() -> None:
            stopped_at = self.fleet.clock.t  # the consumers' last records
            self.finishing |= set(self.held)
            for key, lease in list(self.held.items()):
                done = await self.fleet.store.checkpoint(lease, self._position(stopped_at), {})
                if done is None:
                    self.lost(key)
                    continue
                held = self.held.get(key, done)
                await self.fleet.store.release(replace(done, counter=held.counter))
                self.drop(key, at=stopped_at)
            if self.leader is not None:
                await self.leader.leave()
            self.alive = False

        self.fleet.at(self.fleet.clock.t + DRAIN_S, drained)

    def kill(self) -> None:
        """kill -9: nothing released; the consumers stop reading."""
        self.alive = False
        for key in list(self.held):
            self.drop(key, crash=True)
