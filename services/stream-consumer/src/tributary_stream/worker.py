"""A worker: keeps its fair share of shard leases and runs one consumer task per lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from tributary.clock import Clock
from tributary.errors import TributaryError
from tributary.metrics import Metrics, Unit
from tributary.raw_writer import RawWriter
from tributary_stream.consumer import Limits, ShardConsumer, Shutdown
from tributary_stream.coordinator import LeaseObserver, plan_takes
from tributary_stream.lander import Lander
from tributary_stream.lease import Checkpoint, Lease, LeaseStore
from tributary_stream.processing import ItemSink, Processor
from tributary_stream.route import Router
from tributary_stream.stream import StreamReader

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Timings and limits of a worker."""

    worker_id: str
    limits: Limits
    failover_time_s: float = 10.0
    shard_sync_s: float = 30.0
    initial_position: Checkpoint = Checkpoint.TRIM_HORIZON
    initial_timestamp: datetime | None = None  # for AT_TIMESTAMP
    max_steal: int = 1
    get_records_limit: int = 10_000
    idle_poll_s: float = 1.0
    compress_level: int = 6
    shutdown_timeout_s: float = 25.0
    tick_s: float = 0.25


@dataclass
class _Running:
    consumer: ShardConsumer
    task: asyncio.Task[Shutdown]
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    """Shard sync, renewal, lease taking and balancing, and graceful release on stop."""

    def __init__(
        self,
        config: WorkerConfig,
        store: LeaseStore,
        reader: StreamReader,
        router: Router,
        writer: RawWriter,
        clock: Clock,
        metrics: Metrics,
        processing: tuple[Processor, ItemSink] | None = None,
    ) -> None:
        self.config = config
        self._processing = processing
        self._store = store
        self._reader = reader
        self._router = router
        self._writer = writer
        self._clock = clock
        self._metrics = metrics
        self._observer = LeaseObserver(config.failover_time_s)
        self.running: dict[str, _Running] = {}
        self._closed: set[str] = set()
        self._last_sync = float("-inf")

    @property
    def worker_id(self) -> str:
        """This worker's lease owner name."""
        return self.config.worker_id

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then drain: flush, checkpoint and release every lease."""
        cfg = self.config
        next_renew = next_take = self._clock.monotonic()
        while not stop.is_set():
            now = self._clock.monotonic()
            try:
                if now - self._last_sync >= cfg.shard_sync_s:
                    await self.sync_shards()
                if now >= next_renew:
                    await self.renew()
                    next_renew = now + cfg.failover_time_s / 3
                if now >= next_take:
                    await self.take()
                    next_take = now + cfg.failover_time_s / 2
            except TributaryError as exc:  # the lease table or stream hiccuped: next cycle
                log.warning("coordination cycle failed", extra={"error": str(exc)})
            await self.reap()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), cfg.tick_s)
        await self.drain()

    async def sync_shards(self) -> None:
        """Create a lease for every shard without one; children start at TRIM_HORIZON."""
        shards = await self._reader.list_shards()
        self._last_sync = self._clock.monotonic()
        self._closed = {s.shard_id for s in shards if s.ending_sequence is not None}
        known = {lease.key for lease in await self._store.list_leases()}
        ids = {s.shard_id for s in shards}
        for shard in shards:
            if shard.shard_id in known:
                continue
            is_child = bool(shard.parents & ids) or bool(shard.parents & known)
            start = Checkpoint.TRIM_HORIZON if is_child else self.config.initial_position
            if await self._store.create(
                Lease(shard.shard_id, None, 0, start, parents=shard.parents)
            ):
                log.info("lease created", extra={"shard": shard.shard_id, "start": start})

    async def shard_closed(self, shard_id: str) -> bool:
        """Whether ListShards says `shard_id` is closed (refreshed at most every 5 s)."""
        if self._clock.monotonic() - self._last_sync >= 5:
            await self.sync_shards()
        return shard_id in self._closed

    async def renew(self) -> None:
        """Renew every held lease; a failed renewal means it was taken: stop that consumer."""
        for shard_id, running in list(self.running.items()):
            consumer = running.consumer
            if consumer.lost.is_set() or running.task.done():
                continue
            async with consumer.lease_lock:
                renewed = await self._store.renew(consumer.lease)
                if renewed is None:
                    log.warning("lease lost", extra={"shard": shard_id})
                    self._metrics.add("LeasesLost", 1)
                    consumer.lost.set()
                else:
                    consumer.lease = renewed
        self._metrics.gauge("LeasesHeld", len(self.running))
        now = self._clock.monotonic()
        for shard_id, running in self.running.items():
            age = now - running.consumer.checkpointed_at
            self._metrics.gauge("CheckpointAge", age * 1000, Unit.MILLISECONDS, shard=shard_id)

    async def take(self) -> None:
        """Take free or expired leases up to the fair share, else steal one (see coordinator)."""
        leases = await self._store.list_leases()
        now = self._clock.monotonic()
        self._observer.observe(leases, now)
        plan = plan_takes(
            self.worker_id,
            leases,
            self._observer,
            now,
            self.config.max_steal,
        )
        for lease in plan.take:
            if lease.key in self.running:
                continue
            taken = await self._store.take(lease, self.worker_id)
            if taken is None:
                continue  # someone else was faster
            self._metrics.add("LeasesStolen" if plan.steal else "LeasesTaken", 1)
            log.info(
                "lease taken",
                extra={
                    "shard": lease.key,
                    "from": lease.owner,
                    "steal": plan.steal,
                    "checkpoint": taken.checkpoint,
                },
            )
            self._start(taken)

    def _start(self, lease: Lease) -> None:
        cfg = self.config
        consumer = ShardConsumer(
            lease,
            self._store,
            self._reader,
            self._router,
            Lander(self._writer, lease.key, self._metrics, cfg.compress_level),
            cfg.limits,
            self._clock,
            self._metrics,
            get_records_limit=cfg.get_records_limit,
            idle_poll_s=cfg.idle_poll_s,
            shard_closed=self.shard_closed,
            processing=self._processing,
            initial_timestamp=cfg.initial_timestamp,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop), name=f"shard-{lease.key}")
        self.running[lease.key] = _Running(consumer, task, stop)

    async def reap(self) -> None:
        """Forget finished consumers; release leases of shards that ended."""
        for shard_id, running in list(self.running.items()):
            if not running.task.done():
                continue
            del self.running[shard_id]
            try:
                reason = running.task.result()
            except TributaryError as exc:
                log.error(
                    "shard consumer failed; lease released for a retry",
                    extra={"shard": shard_id, "error": str(exc)},
                )
                reason = Shutdown.REQUESTED
            log.info("shard consumer stopped", extra={"shard": shard_id, "reason": reason})
            if reason is not Shutdown.LEASE_LOST:
                with contextlib.suppress(TributaryError):
                    await self._store.release(running.consumer.lease)

    async def drain(self) -> None:
        """Graceful stop: every consumer flushes and checkpoints, then leases are released."""
        for running in self.running.values():
            running.stop.set()
        tasks = [r.task for r in self.running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_timeout_s)
            for task in pending:
                task.cancel()
        await self.reap()
