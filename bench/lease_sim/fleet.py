"""The simulated world: the metered stores, the shards' rates, the workers, the actions running
on the SimLoop, and what was observed (consumer sessions, unowned gaps, re-reads, moves)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lease_sim.clock import FakeClock
from lease_sim.dynamo import Meter
from lease_sim.store import MeteredFleetStore, MeteredLeaseStore
from tributary_stream.lease import Lease

if TYPE_CHECKING:
    from lease_sim.worker import SimWorker


@dataclass
class Session:
    """One consumer of one shard on one worker."""

    worker: str
    start: float
    position: float  # the checkpoint it started from (sim seconds)
    stop: float | None = None
    overlapped_from: float | None = None  # another consumer started while this one ran


@dataclass
class Fleet:
    """The simulated world: stores, shards, workers, the event queue and what was observed."""

    algorithm: str
    shards: int
    clock: FakeClock
    rates: dict[str, float]  # records/s per shard
    meter: Meter = field(default_factory=Meter)
    latency: bool = True
    workers: dict[str, SimWorker] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # actions running
    errors: list[BaseException] = field(default_factory=list)  # raised by an action
    sessions: dict[str, list[Session]] = field(default_factory=dict)
    unconsumed_since: dict[str, float] = field(default_factory=dict)
    crashed: set[str] = field(default_factory=set)  # shards last consumed by a killed worker
    gaps: list[tuple[float, float, bool]] = field(default_factory=list)  # (end, length, crash)
    reread: list[tuple[float, float]] = field(default_factory=list)  # (time, records)
    moves: list[float] = field(default_factory=list)  # times a shard's consumer changed
    lost_draining: list[float] = field(default_factory=list)  # leases taken from a drainer
    reassigned: list[float] = field(default_factory=list)  # leader: pickup timeouts
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(18))
    steady: dict[str, Any] = field(default_factory=dict)  # the steady state's requests and units

    def __post_init__(self) -> None:
        self.meter.latency_on = self.latency
        self.fleet_store = MeteredFleetStore(self.meter)
        self.store = MeteredLeaseStore(self.meter, self.fleet_store, self.clock)
        for key in self.rates:  # an empty lease table: the workers' shard sync creates them
            self.unconsumed_since[key] = 0.0

    def at(self, t: float, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `action` as its own task at simulated time `t`."""
        loop = asyncio.get_running_loop()

        async def guarded() -> None:
            try:
                await action()
            except Exception as exc:  # noqa: BLE001 (the simulation's crash logger: run_until re-raises)
                self.errors.append(exc)

        def start() -> None:
            task = loop.create_task(guarded())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        loop.call_at(t, start)

    async def run_until(self, t: float) -> None:
        """Let every actor run until simulated time `t`."""
        await asyncio.sleep(max(0.0, t - self.clock.t))
        if self.errors:
            raise self.errors[0]

    async def close(self) -> None:
        """Cancel the actions still running (their next ticks are dropped with the loop)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def started(self, key: str, worker: str, lease: Lease) -> None:
        now = self.clock.t
        position = float(lease.checkpoint) / 1000 if lease.checkpoint.isdigit() else 0.0
        history = self.sessions.setdefault(key, [])
        rate = self.rates[key]
        if history:
            prev = history[-1]
            if prev.stop is None:  # a zombie still reading: all it read since the checkpoint
                self.reread.append((now, rate * max(0.0, now - position)))
                prev.overlapped_from = now
            else:
                self.reread.append((now, rate * max(0.0, prev.stop - position)))
            if prev.worker != worker:
                self.moves.append(now)
        else:
            self.moves.append(now)
        history.append(Session(worker, now, position))
        since = self.unconsumed_since.pop(key, None)
        if since is not None:
            self.gaps.append((now, now - since, key in self.crashed))
        self.crashed.discard(key)

    def stopped(self, key: str, worker: str, crash: bool = False, at: float | None = None) -> None:
        now = self.clock.t if at is None else at  # `at`: when the consumer stopped reading
        for session in reversed(self.sessions.get(key, [])):
            if session.worker == worker and session.stop is None:
                session.stop = now
                if session.overlapped_from is not None:  # read twice while overlapping
                    self.reread.append((now, self.rates[key] * (now - session.overlapped_from)))
                break
        if not any(key in w.held for w in self.workers.values() if w.alive):
            self.unconsumed_since.setdefault(key, now)
            if crash:
                self.crashed.add(key)

    def sample(self) -> None:
        self.samples.append(
            (self.clock.t, {w.id: len(w.held) for w in self.workers.values() if w.alive})
        )
