"""One cycle of KCL 3-style lease management, for one worker.

Every worker, each cycle: writes its heartbeat (the write returns the fleet row: who leads,
everyone's load), and reads the leases it owns through the `leaseOwner` GSI. One elected
worker, the leader, also scans the lease table (eventually consistent: every write it makes
is conditional, so a stale row only costs a refused write) and assigns: free and expired leases
are taken on behalf of the least loaded worker, which picks them up from its GSI query; moves
are graceful handoffs (`handoffTo`), forced after `handoff_timeout_s` if the owner does not
hand over; finished leases are deleted once every child has started. The leader lock fails
over like a lease: unchanged for the failover time on the observer's monotonic clock.

Used by the Worker (`LEASE_ASSIGNMENT=leader`) and by bench/lease_sim/, on the same stores.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from tributary.clock import Clock
from tributary.errors import TributaryError
from tributary_stream.assignment import Assignment, BalanceConfig, plan_assignment
from tributary_stream.concurrency import bounded
from tributary_stream.coordinator import LeaseObserver
from tributary_stream.fleet import FleetStore, FleetView, WorkerBeat
from tributary_stream.lease import Checkpoint, Lease, LeaseStore

log = logging.getLogger(__name__)

T = TypeVar("T")

# Slack for a write sent just before a leader's plan expired, still on the wire.
_IN_FLIGHT_S = 0.5


@dataclass(frozen=True, slots=True)
class LeaderConfig:
    """Timings and balancing of the leader."""

    worker_id: str
    failover_time_s: float
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    handoff_timeout_s: float | None = None  # the owner's time to hand over; failover time
    # A worker is given leases only while its beat changed within this (failover / 2): a
    # worker beats every failover / 3, so one killed is not assigned to for the rest of the
    # failover time its last beat still covers.
    fresh_beat_s: float | None = None
    # A lease assigned (or handed over) to a worker that has not taken it this long after
    # (failover / 2: two of its take cycles) is reassigned to another worker; each further
    # miss of the same lease doubles the wait (up to 4x).
    pickup_timeout_s: float | None = None
    # Takes, handoffs, forces and deletes in flight at once (LEASE_CONCURRENCY): 1,000 takes
    # one after another at 10 ms each would outlast the 2/3 of the failover time a leader
    # writes for after its lock renewal.
    concurrency: int = 32

    @property
    def handoff_timeout(self) -> float:
        """How long the new owner waits for a graceful release before the lease is forced."""
        if self.handoff_timeout_s is not None:
            return self.handoff_timeout_s
        return self.failover_time_s

    @property
    def fresh_beat(self) -> float:
        """The oldest beat (on the leader's clock) of a worker that may be given leases."""
        return self.fresh_beat_s if self.fresh_beat_s is not None else self.failover_time_s / 2

    @property
    def pickup_timeout(self) -> float:
        """How long a lease may wait for the worker it was assigned to before it goes to
        another one."""
        if self.pickup_timeout_s is not None:
            return self.pickup_timeout_s
        return self.failover_time_s / 2


@dataclass(slots=True)
class _Pickup:
    """A lease this leader gave `to` (a take on its behalf, or a handoff request): `to` has
    not taken it while the row still carries `token` (its own take writes a new one)."""

    to: str
    token: str
    since: float | None  # first seen owned by `to` with `token` (a handoff: once released)


@dataclass(frozen=True, slots=True)
class Load:
    """What a worker reports of itself."""

    bytes_per_s: float = 0.0
    records_per_s: float = 0.0
    leases: int = 0
    avoid: frozenset[str] = frozenset()  # leases given up for a cool-down


@dataclass(frozen=True, slots=True)
class LeaderActions:
    """What the leader did in one cycle (for logs, metrics and the benchmark)."""

    assigned: list[tuple[Lease, str]] = field(default_factory=list)
    handoffs: list[tuple[Lease, str]] = field(default_factory=list)
    forced: list[tuple[Lease, str]] = field(default_factory=list)
    deleted: list[Lease] = field(default_factory=list)
    # of `assigned`: leases whose earlier assignee did not take them within the pickup timeout
    reassigned: list[tuple[Lease, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Beat:
    beat: int
    since: float


class LeaderCoordinator:
    """Heartbeat, leader election, and (when leading) assignment."""

    def __init__(
        self, config: LeaderConfig, store: LeaseStore, fleet: FleetStore, clock: Clock
    ) -> None:
        self.config = config
        self._store = store
        self._fleet = fleet
        self._clock = clock
        self._beat = 0
        self._lock: tuple[str | None, int, float] = (None, 0, clock.monotonic())
        self._held: int | None = None  # the lock counter while leading
        self._renewed_at = float("-inf")  # when the last claim or renewal of ours was sent
        self._observer = LeaseObserver(config.failover_time_s)
        self._beats: dict[str, _Beat] = {}
        self._handoffs: dict[tuple[str, str], float] = {}  # (lease, to) → first seen
        self._pickups: dict[str, _Pickup] = {}  # leases given to a worker, not yet taken
        # pickup timeouts in a row per lease: each doubles the next wait (up to 4x), so a lease
        # the owner index is slow to show (lag beyond the timeout) does not bounce every cycle
        self._misses: dict[str, int] = {}
        # each lease's counter when this leader first saw it, and when
        self._first: dict[str, tuple[int, float]] = {}
        self._view: FleetView | None = None  # the fleet row, as the last beat returned it
        self._draining = False  # stopping: beats go on (saying so) until the drain ends
        self._stopped = False
        self._stale_plans_until: float | None = None  # see `_last_stale_plan`
        self._beating = asyncio.Lock()
        self.leases: list[Lease] = []  # the leader's last scan
        self.last = LeaderActions()

    @property
    def is_leader(self) -> bool:
        """Whether this worker held the leader lock at its last cycle."""
        return self._held is not None

    @property
    def worker_id(self) -> str:
        """This worker."""
        return self.config.worker_id

    async def heartbeat(self, load: Load) -> FleetView:
        """Write this worker's beat (the renewal loop calls it, on its own schedule, so a slow
        coordination loop does not make a worker look dead); the write returns the fleet row,
        whose beats every worker tracks, so a newly elected leader knows the dead at once.
        One beat at a time: an older beat never lands over a newer (draining) one."""
        async with self._beating:
            if self._stopped:  # left the fleet: a beat now would bring it back, to be assigned to
                return self._view or FleetView()
            self._beat += 1
            draining = self._draining
            view = await self._fleet.beat(
                WorkerBeat(
                    self.worker_id,
                    self._beat,
                    load.bytes_per_s,
                    load.records_per_s,
                    load.leases,
                    load.avoid,
                    draining,
                )
            )
            if draining and self._stale_plans_until is None:
                self._stale_plans_until = self._last_stale_plan(view)
        self._view = view
        self._live(view, self._clock.monotonic())
        return view

    def _last_stale_plan(self, view: FleetView) -> float:
        """When takes for this worker planned on a fleet row read before its first draining
        beat (`view`, just written) can no longer land: another worker leading stops writing
        2/3 of the failover time after its last renewal, which came before that read (see
        `_still_leading`; its writes are cut off then, retries included). Now, if nobody else
        leads (a leader that resigned or lost the lock had finished writing)."""
        now = self._clock.monotonic()
        if view.leader in (None, self.worker_id):
            return now
        return now + self.config.failover_time_s * 2 / 3 + _IN_FLIGHT_S

    async def cycle(self, load: Load) -> list[str]:
        """Lead if the lock is ours or free or expired; the keys of the leases this worker owns
        as the GSI says (eventually consistent: fence every use with a conditional write).
        Beats first if none was written yet."""
        view = self._view if self._view is not None else await self.heartbeat(load)
        # A cold start (the lock never held): the first leader lets the fleet beat for one
        # cycle before it assigns, or it would give every lease to the first few workers.
        first = self._held is None and view.leader_counter == 0
        await self._elect(view)
        self.last = LeaderActions()
        if self._held is not None and not first:
            view = await self.heartbeat(load)  # the leader assigns on a fresh fleet row
            live, dead = self._live(view, self._clock.monotonic())
            self.last = await self._assign(live, dead, view)
        return await self._store.list_owned(self.worker_id)

    async def _elect(self, view: FleetView) -> None:
        now = self._clock.monotonic()
        holder, counter, since = self._lock
        if (view.leader, view.leader_counter) != (holder, counter):
            self._lock = (view.leader, view.leader_counter, now)
            since = now
        if self._held is not None:  # renewed on our own counter: the view may predate it
            if await self._fleet.renew_leader(self.worker_id, self._held):
                self._held += 1
                self._renewed_at = now
                return
            log.warning("leader lock lost", extra={"worker": self.worker_id})
            self._held = None
            return
        if view.leader is None or (
            view.leader != self.worker_id and now - since >= self.config.failover_time_s
        ):
            if await self._fleet.claim_leader(self.worker_id, view):
                self._held = view.leader_counter + 1
                self._renewed_at = now
                self._handoffs.clear()
                log.info("leader elected", extra={"worker": self.worker_id, "was": view.leader})
        elif view.leader == self.worker_id and await self._fleet.renew_leader(
            self.worker_id, view.leader_counter
        ):  # ours from before a restart of this object
            self._held = view.leader_counter + 1
            self._renewed_at = now

    def _plan_expires_at(self) -> float:
        """When this leader's plan expires: 2/3 of the failover time after its last renewal."""
        return self._renewed_at + self.config.failover_time_s * 2 / 3

    def _still_leading(self) -> bool:
        """Whether nobody else can have claimed the lock yet: others wait the failover time
        after they saw our last renewal, so stop writing at 2/3 of it (a slow or paused leader
        must not act on an old plan while a new leader plans)."""
        if self._clock.monotonic() < self._plan_expires_at():
            return True
        log.warning("leader cycle outlasted its lock; stopping", extra={"worker": self.worker_id})
        return False

    async def _within_lock(self, write: Awaitable[T]) -> T | None:
        """`write`, cut off (None) when this leader's plan expires (2/3 of the failover time
        after its renewal), so no write of it, and no retry of one, is sent after that."""
        left = self._plan_expires_at() - self._clock.monotonic()
        try:
            async with asyncio.timeout(max(left, 0.0)):
                return await write
        except TimeoutError:
            log.warning("leader write cut off: its plan expired", extra={"worker": self.worker_id})
            return None

    def _fresh(self, worker_id: str, now: float) -> bool:
        seen = self._beats.get(worker_id)
        return seen is not None and now - seen.since < self.config.fresh_beat

    def _unclaimed(self, leases: list[Lease], now: float) -> dict[str, str]:
        """Leases given to a worker that has not taken them within the pickup timeout (lease
        → that worker); pickups that were taken, moved on or went away are forgotten."""
        rows = {lease.key: lease for lease in leases}
        unclaimed: dict[str, str] = {}
        for key, pickup in list(self._pickups.items()):
            row = rows.get(key)
            if row is None or row.token != pickup.token:
                del self._pickups[key]  # taken (a new take token), or gone
                self._misses.pop(key, None)
                continue
            if row.owner != pickup.to:
                if row.handoff_to != pickup.to:
                    del self._pickups[key]  # the handoff was cancelled
                continue  # still with its old owner, handing over
            if pickup.since is None:
                pickup.since = now  # released to `to`: its wait starts now
            wait = self.config.pickup_timeout * 2 ** min(self._misses.get(key, 0), 2)
            if now - pickup.since >= wait:
                unclaimed[key] = pickup.to
        return unclaimed

    def _live(self, view: FleetView, now: float) -> tuple[list[str], list[str]]:
        """Workers whose beat changed within the failover time (on this clock), and the dead."""
        live, dead = [], []
        for worker_id, beat in view.workers.items():
            seen = self._beats.get(worker_id)
            if seen is None or seen.beat != beat.beat:
                self._beats[worker_id] = seen = _Beat(beat.beat, now)
            if now - seen.since < self.config.failover_time_s:
                live.append(worker_id)
            else:
                dead.append(worker_id)
        for gone in set(self._beats) - set(view.workers):  # left, or forgotten by a leader
            if now - self._beats[gone].since >= self.config.failover_time_s:
                dead.append(gone)  # its leases are expired: no need to watch their counters
            if now - self._beats[gone].since >= 10 * self.config.failover_time_s:
                del self._beats[gone]
        return live, dead

    async def _assign(self, live: list[str], dead: list[str], view: FleetView) -> LeaderActions:
        cfg = self.config
        leases = self.leases = await self._store.list_leases(consistent=False)
        now = self._clock.monotonic()
        # Leases whose counter this leader has never seen move (it has just been elected, or
        # their owner stopped renewing before it first scanned them).
        self._first = {
            lease.key: self._first.get(lease.key, (lease.counter, now)) for lease in leases
        }
        # ... and unchanged for longer than a renewal interval plus scan lag (failover / 3 +
        # failover / 10): a live owner whose beats fail but who renews shows a new counter by
        # then, so the beat shortcut below cannot rob it.
        still_for = cfg.failover_time_s / 3 + cfg.failover_time_s / 10
        still = {
            lease.key
            for lease in leases
            if self._first[lease.key][0] == lease.counter
            and now - self._first[lease.key][1] >= still_for
        }
        self._observer.observe(leases, now)
        unclaimed = self._unclaimed(leases, now)
        gone = set(dead)
        if gone & set(view.workers):
            await self._fleet.forget(self.worker_id, sorted(gone & set(view.workers)))

        def expired(lease: Lease) -> bool:
            # The counter decides: a worker that renews keeps its leases even if its beats stop
            # (a draining worker's, a failing heartbeat write). The beat only spares a leader
            # the wait on a lease whose counter it never saw move (a new leader's), whose
            # owner's beat is gone. A lease given to a worker that has not taken it within the
            # pickup timeout goes elsewhere (its take fenced on the counter as ever).
            if self._observer.expired(lease, now) or lease.key in unclaimed:
                return True
            return lease.key in still and lease.owner in gone

        # Leases go only to workers beating now: one whose last beat is older may be dead
        # already (killed since), and a lease given to it would wait a failover time.
        takers = [
            w
            for w in live
            if not view.workers.get(w, WorkerBeat(w, 0)).draining and self._fresh(w, now)
        ]
        avoid = {w: set(beat.avoid) for w, beat in view.workers.items() if beat.avoid}
        for key, to in unclaimed.items():
            avoid.setdefault(to, set()).add(key)
        plan: Assignment = plan_assignment(
            leases,
            takers,
            expired,
            cfg.balance,
            {w: frozenset(keys) for w, keys in avoid.items()},
        )
        actions = LeaderActions()

        async def take(item: tuple[Lease, str]) -> None:
            lease, to = item
            if not self._still_leading():
                return
            taken = await self._within_lock(self._store.take(lease, to))
            if taken is not None:
                actions.assigned.append((lease, to))
                if lease.key in unclaimed:
                    actions.reassigned.append((lease, to))
                    self._misses[lease.key] = self._misses.get(lease.key, 0) + 1
                # the wait starts at the write (a long cycle's last takes are still fresh)
                self._pickups[lease.key] = _Pickup(to, taken.token, self._clock.monotonic())

        async def handoff(item: tuple[Lease, str]) -> None:
            lease, to = item
            if not self._still_leading():
                return
            if await self._within_lock(self._store.request_handoff(lease, to)):
                actions.handoffs.append((lease, to))
                self._handoffs[(lease.key, to)] = now
                self._pickups[lease.key] = _Pickup(to, lease.token, None)

        async def force(item: tuple[tuple[str, str | None], Lease]) -> None:
            (key, to), lease = item
            first = self._handoffs.setdefault((key, to or ""), now)
            if to in takers and now - first >= cfg.handoff_timeout and self._still_leading():
                forced = await self._within_lock(self._store.force_handoff(lease, to))
                if forced is not None:
                    actions.forced.append((lease, to))
                    self._pickups[key] = _Pickup(to, forced.token, self._clock.monotonic())
                    log.warning(
                        "handoff timed out; lease forced to its new owner",
                        extra={"shard": key, "from": lease.owner, "to": to},
                    )

        async def delete(lease: Lease) -> None:
            if self._still_leading() and await self._store.delete(lease):
                actions.deleted.append(lease)
                log.info("finished lease deleted", extra={"shard": lease.key})

        limit = cfg.concurrency
        await bounded(limit, plan.assign, take)
        pending = {(lease.key, lease.handoff_to): lease for lease in leases if lease.handoff_to}
        if not self._still_leading():
            return actions
        await bounded(limit, plan.handoff, handoff)
        self._handoffs = {k: t for k, t in self._handoffs.items() if k in pending or t == now}
        if not self._still_leading():
            return actions
        await bounded(limit, list(pending.items()), force)
        if not self._still_leading():
            return actions
        await bounded(limit, _finished_and_started(leases), delete)
        return actions

    async def stop(self, consuming: set[str]) -> None:
        """On shutdown: beat as draining (nothing more is assigned here, and the leases still
        draining keep counting as renewed), give the leader lock up, so another worker leads
        at once, and release the leases assigned here that no consumer picked up yet (those in
        `consuming` are released when they have drained). `leave` once the drain is over."""
        self._draining = True
        await self.heartbeat(Load(leases=len(consuming)))
        if self._held is not None:
            await self._fleet.resign(self.worker_id, self._held)
            self._held = None
        await self._release_unconsumed(consuming)

    async def leave(self) -> None:
        """After the drain: once no leader's plan from before the draining beat can still land,
        release what such a plan gave this worker meanwhile; then remove this worker's beat (no
        beat after this), whatever that release met."""
        try:
            if self._stale_plans_until is not None:
                await asyncio.sleep(max(0.0, self._stale_plans_until - self._clock.monotonic()))
            await self._release_unconsumed(set())
        except TributaryError as exc:  # expiring instead: the leader reassigns them then
            log.warning(
                "could not release the leases given to this worker while it drained",
                extra={"worker": self.worker_id, "error": str(exc)},
            )
        finally:
            self._stopped = True
            await self._fleet.leave(self.worker_id)

    async def _release_unconsumed(self, consuming: set[str]) -> None:
        """Release, to nobody, the leases this worker owns that are not in `consuming`, and
        withdraw the handoffs asked of their owners to it; read consistently (the owner index
        lags, and a lease given here just now is the one it would miss)."""
        for lease in await self._store.list_leases(consistent=True):
            if lease.key in consuming:
                continue
            if lease.owner != self.worker_id:
                if lease.handoff_to != self.worker_id:
                    continue
                if await self._store.cancel_handoff(lease, self.worker_id):
                    continue
                row = await self._store.get(lease.key)  # handed over meanwhile?
                if row is None or row.owner != self.worker_id:
                    continue
                lease = row
            await self._store.release(replace(lease, handoff_to=None))


def _finished_and_started(leases: list[Lease]) -> list[Lease]:
    """Finished leases every child of which has started (has an owner or a checkpoint), oldest
    first: not while a parent's lease is still there (a parent is deleted only while its
    children are there to show it may be, so a split child must outlive its parent's lease)."""
    keys = {lease.key for lease in leases}
    children: dict[str, list[Lease]] = {}
    for lease in leases:
        for parent in lease.parents:
            children.setdefault(parent, []).append(lease)
    return [
        lease
        for lease in leases
        if lease.finished
        and lease.key in children
        and all(_started(child) for child in children[lease.key])
        and not lease.parents & keys
    ]


def _started(lease: Lease) -> bool:
    return lease.owner is not None or lease.checkpoint not in (
        Checkpoint.TRIM_HORIZON,
        Checkpoint.LATEST,
        Checkpoint.AT_TIMESTAMP,
    )
