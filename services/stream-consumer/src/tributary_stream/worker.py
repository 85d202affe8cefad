"""A worker: keeps its fair share of shard leases and runs one consumer task per lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from tributary.clock import Clock
from tributary.errors import ConfigError, TributaryError
from tributary.metrics import Metrics, Unit
from tributary.raw_writer import RawWriter
from tributary_stream.concurrency import bounded, sleep_unless
from tributary_stream.consumer import ShardConsumer, Shutdown
from tributary_stream.coordinator import LeaseObserver, eligible, plan_takes
from tributary_stream.fleet import FleetStore
from tributary_stream.lander import Lander
from tributary_stream.leader import LeaderConfig, LeaderCoordinator, Load
from tributary_stream.lease import Checkpoint, Lease, LeaseStore
from tributary_stream.meter import MeteredReader, ShardMeter
from tributary_stream.processing import ItemSink, Processor
from tributary_stream.route import Router
from tributary_stream.stream import Shard, StreamReader
from tributary_stream.worker_config import WorkerConfig

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger(__name__)


@dataclass
class _Running:
    consumer: ShardConsumer
    task: asyncio.Task[Shutdown]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    meter: ShardMeter | None = None


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
        fleet: FleetStore | None = None,
    ) -> None:
        if config.assignment not in ("leader", "scan"):
            raise ValueError(f"lease assignment {config.assignment!r}: 'leader' or 'scan'")
        if config.assignment == "leader" and fleet is None:
            raise ValueError("lease assignment 'leader' needs a FleetStore")
        self.config = config
        self.leader = (
            LeaderCoordinator(
                LeaderConfig(
                    config.worker_id,
                    config.failover_time_s,
                    config.balance,
                    config.handoff_timeout_s,
                    concurrency=config.lease_concurrency,
                ),
                store,
                fleet,
                clock,
            )
            if fleet is not None and config.assignment == "leader"
            else None
        )
        self._finished_seen = 0
        self._ran: set[str] = set()  # leases consumed here and not released since
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
        self._loop_at = clock.monotonic()  # last turn of the coordination loop
        self._coord_failures = 0
        self._warned: dict[str, float] = {}  # rate limit of repeated warnings, by subject
        # Shards given up after failing: no retake before (monotonic), and since when they
        # have made no checkpoint (kept until this worker runs them again or another owns them).
        self._cooling: dict[str, float] = {}
        self._failing_since: dict[str, float] = {}
        self._executor = (
            ThreadPoolExecutor(config.processor_threads, thread_name_prefix="stream-processor")
            if processing is not None
            else None
        )

    @property
    def worker_id(self) -> str:
        """This worker's lease owner name."""
        return self.config.worker_id

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then drain: flush, checkpoint and release every lease."""
        if self.leader is not None:
            await self._probe_owner_index()
        renewals_done = asyncio.Event()
        renewer = asyncio.create_task(self._renew_loop(renewals_done), name="lease-renewal")
        fatal: ConfigError | None = None
        try:
            try:
                await self._coordinate(stop, renewer)
            except ConfigError as exc:  # the owner index went away: drain, then exit 2
                log.error("lease management cannot go on", extra={"error": str(exc)})
                fatal = exc
            if self.leader is not None:  # first: another worker leads (assigns) at once
                with contextlib.suppress(TributaryError):
                    await self.leader.stop(set(self.running))
            await self.drain()  # renewals (and beats, as draining) go on while shards drain
            if self.leader is not None:
                with contextlib.suppress(TributaryError):
                    await self.leader.leave()
        finally:
            renewals_done.set()
            await renewer
            if self._executor is not None:  # a hung processor call must not hold up the exit
                self._executor.shutdown(wait=False, cancel_futures=True)
        if fatal is not None:
            raise fatal

    async def _probe_owner_index(self) -> None:
        """Leader mode reads its leases from the owner index: a table without it is a
        ConfigError at once, not a coordination failure backed off from forever. The index
        still backfilling (a TransientError) and any other failure are left to the
        coordination loop's backoff: the index becomes ACTIVE by itself."""
        try:
            await self._store.list_owned(self.worker_id)
        except ConfigError:
            raise
        except TributaryError as exc:
            log.warning(
                "owner index probe failed; coordination backs off and retries",
                extra={"error": str(exc)},
            )

    async def _coordinate(self, stop: asyncio.Event, renewer: asyncio.Task[None]) -> None:
        """Shard sync and lease taking, backing off while the lease table or stream fails."""
        cfg = self.config
        next_take = retry_at = self._clock.monotonic()
        while not stop.is_set():
            if renewer.done():
                await renewer  # raises what killed it: a worker that cannot renew must die
                raise RuntimeError("lease renewal stopped")  # pragma: no cover
            now = self._loop_at = self._clock.monotonic()
            if now >= retry_at:
                try:
                    async with asyncio.timeout(cfg.coordination_deadline):
                        if now - self._last_sync >= cfg.shard_sync_s:
                            await self.sync_shards()
                        if now >= next_take:
                            await self.take()
                            next_take = now + cfg.take_every_s
                    self._coord_failures = 0
                except ConfigError:
                    raise
                except (TributaryError, TimeoutError) as exc:  # a hiccup or brownout: back off
                    self._coord_failures += 1
                    self._metrics.add("CoordinationFailures", 1)
                    pause = self._backoff(self._coord_failures, 0.5)
                    retry_at = self._clock.monotonic() + pause
                    self._warn(
                        "coordination",
                        "coordination cycle failed; backing off",
                        error=str(exc) or type(exc).__name__,
                        failures=self._coord_failures,
                        pause_s=round(pause, 2),
                    )
            await self.reap()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), cfg.tick_s)

    def _backoff(self, failures: int, base: float) -> float:
        """Exponential, capped, with jitter in its upper half (never a hot loop)."""
        ceiling = min(self.config.max_backoff_s, base * 2 ** min(failures - 1, 30))
        return float(ceiling * random.uniform(0.5, 1.0))

    def _warn(
        self, subject: str, message: str, *, level: int = logging.WARNING, **extra: object
    ) -> None:
        """Log `message`, at most once a minute per `subject` (the metrics count every one)."""
        now = self._clock.monotonic()
        if now - self._warned.get(subject, float("-inf")) < 60:
            return
        self._warned[subject] = now
        log.log(level, message, extra={"worker": self.worker_id, **extra})

    async def sync_shards(self) -> None:
        """Create a lease for every shard without one; children start at TRIM_HORIZON. With a
        leader, only the leader creates leases (the others only note closed shards). A closed
        shard a child of which has a lease gets none: its finished lease was deleted."""
        shards = await self._reader.list_shards()
        self._last_sync = self._clock.monotonic()
        self._closed = {s.shard_id for s in shards if s.ending_sequence is not None}
        if self.leader is not None and not self.leader.is_leader:
            return
        known = {lease.key for lease in await self._store.list_leases()}
        ids = {s.shard_id for s in shards}
        succeeded = {p for s in shards if s.shard_id in known for p in s.parents}
        new = [s for s in shards if s.shard_id not in known and s.shard_id not in succeeded]

        async def create(shard: Shard) -> None:
            is_child = bool(shard.parents & ids) or bool(shard.parents & known)
            start = Checkpoint.TRIM_HORIZON if is_child else self.config.initial_position
            if await self._store.create(
                Lease(shard.shard_id, None, 0, start, parents=shard.parents)
            ):
                log.info("lease created", extra={"shard": shard.shard_id, "start": start})

        await bounded(self.config.lease_concurrency, new, create)

    async def shard_closed(self, shard_id: str) -> bool:
        """Whether ListShards says `shard_id` is closed (refreshed at most every 5 s)."""
        if self._clock.monotonic() - self._last_sync >= 5:
            await self.sync_shards()
        return shard_id in self._closed

    async def _renew_loop(self, done: asyncio.Event) -> None:
        """Renew on a schedule of its own, whatever the coordination loop or shards wait on."""
        every = self.config.renew_every_s
        while not done.is_set():
            started = self._clock.monotonic()
            await self.renew()
            await self._beat()
            await self._heartbeat()
            pause = max(0.0, started + every - self._clock.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), pause)

    async def renew(self) -> None:
        """Renew every held lease at once, each within the renewal deadline; a renewal refused
        means the lease was taken: stop that consumer. A failed or late one is retried next
        round (the lease is lost only if another worker takes it meanwhile)."""
        await asyncio.gather(*(self._renew_one(sid, r) for sid, r in list(self.running.items())))
        self._metrics.gauge("LeasesHeld", len(self.running))
        now = self._clock.monotonic()
        for shard_id, running in self.running.items():
            age = now - running.consumer.checkpointed_at
            self._metrics.gauge("CheckpointAge", age * 1000, Unit.MILLISECONDS, shard=shard_id)

    async def _renew_one(self, shard_id: str, running: _Running) -> None:
        consumer = running.consumer
        if consumer.lost.is_set() or running.task.done():
            return
        lease = consumer.lease
        if running.meter is not None:
            bps, rps = running.meter.rates()
            lease = replace(lease, throughput_bps=bps, records_per_s=rps)
        try:
            renewed = await asyncio.wait_for(self._store.renew(lease), self.config.renew_every_s)
        except (TributaryError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                await self._after_late_renewal(consumer)
            self._metrics.add("RenewalFailures", 1, shard=shard_id)
            self._warn(
                f"renew {shard_id}",
                "lease renewal failed; retrying next round",
                shard=shard_id,
                error=str(exc) or type(exc).__name__,
            )
            return
        if renewed is None:
            log.warning("lease lost", extra={"shard": shard_id})
            self._metrics.add("LeasesLost", 1)
            consumer.lost.set()
        else:  # only the counter: a checkpoint may have landed meanwhile
            consumer.lease = replace(consumer.lease, counter=renewed.counter)
            if not self._release_for_rewind(running, renewed):
                self._hand_off(running, renewed)

    def _release_for_rewind(self, running: _Running, row: Lease) -> bool:
        """A rewind holds this lease (`row.hold`): stop the consumer (its final checkpoint) and
        `reap` releases the lease to nobody (no handoff: the rewind frees it once recorded)."""
        consumer = running.consumer
        if not row.held(self._clock.now()) or row.token != consumer.lease.token:
            return False
        if not running.stop.is_set():
            log.info(
                "releasing a lease for a rewind",
                extra={"shard": row.key, "rewind": row.hold.rewind_id if row.hold else ""},
            )
            self._metrics.add("LeasesReleasedForRewind", 1)
        consumer.lease = replace(consumer.lease, handoff_to=None)
        running.stop.set()
        return True

    def _hand_off(self, running: _Running, row: Lease) -> None:
        """The leader asked for this lease (`row.handoff_to`): stop the consumer (its final
        checkpoint), and `reap` releases the lease to the new owner."""
        to = row.handoff_to
        consumer = running.consumer
        if not to or to == self.worker_id or consumer.lease.handoff_to == to:
            return
        if row.token != consumer.lease.token:
            return  # the renewal's row carries another take's token: not a request to this take
        log.info("handing a lease over", extra={"shard": row.key, "to": to})
        self._metrics.add("LeasesHandedOff", 1)
        consumer.lease = replace(consumer.lease, handoff_to=to)
        running.stop.set()

    async def _beat(self) -> None:
        """With a leader: this worker's beat and load in the fleet row (see leader.py)."""
        if self.leader is None:
            return
        try:
            await asyncio.wait_for(self.leader.heartbeat(self._load()), self.config.renew_every_s)
        except (TributaryError, TimeoutError) as exc:
            self._metrics.add("HeartbeatFailures", 1)
            self._warn("beat", "fleet heartbeat failed; retrying next round", error=str(exc))

    async def _after_late_renewal(self, consumer: ShardConsumer) -> None:
        """A renewal that timed out may have gone through: read the row, and if it is still
        ours (owner and take token: nobody took it since), carry on from its counter, or the
        next renewal would fence ourselves out."""
        lease = consumer.lease
        try:
            row = await asyncio.wait_for(self._store.get(lease.key), self.config.renew_every_s)
        except (TributaryError, TimeoutError):
            return  # next round: the lease is lost only if the row says so
        if row is not None and row.owner == lease.owner and row.token == lease.token:
            consumer.lease = replace(consumer.lease, counter=max(row.counter, lease.counter))

    def unhealthy(self) -> list[str]:
        """Why the worker should be replaced (empty while healthy): the coordination loop or a
        shard loop has not turned for long, or a shard, failing or behind, has made no
        checkpoint for `stall_s` (counting the runs before a cool-down)."""
        cfg, now = self.config, self._clock.monotonic()
        reasons = []
        if now - self._loop_at > 2 * cfg.coordination_deadline:
            reasons.append(f"coordination loop still for {now - self._loop_at:.0f} s")
        for shard_id, r in self.running.items():
            if r.task.done():
                continue
            if now - r.consumer.active_at > cfg.stall_s:
                reasons.append(f"{shard_id}: read loop still for {cfg.stall_s:g} s")
            elif r.consumer.behind_or_failing and now - r.consumer.checkpointed_at > cfg.stall_s:
                reasons.append(
                    f"{shard_id}: no checkpoint for {cfg.stall_s:g} s while failing or behind"
                )
        for shard_id, since in self._failing_since.items():
            if shard_id not in self.running and now - since > cfg.stall_s:
                reasons.append(f"{shard_id}: given up, no checkpoint for {cfg.stall_s:g} s")
        return reasons

    async def _heartbeat(self) -> None:
        """Touch the health file while the worker is healthy (see tributary_stream.health)."""
        path = self.config.health_file
        if path is None:
            return
        reasons = self.unhealthy()
        if reasons:
            self._warn("health", "worker unhealthy: not touching the health file", reasons=reasons)
            return
        try:
            await asyncio.to_thread(path.touch)
        except OSError as exc:  # the check will report it; renewals must go on
            self._warn("health file", "cannot touch the health file", error=str(exc))

    async def take(self) -> None:
        """One lease-management cycle: KCL 3.x's (`take_assigned`) or KCL 2.x's (`take_scanned`)."""
        if self.leader is not None:
            await self.take_assigned()
        else:
            await self.take_scanned()

    def _load(self) -> Load:
        bps = rps = 0.0
        for running in self.running.values():
            if running.meter is not None:
                bps += running.meter.bytes_per_s
                rps += running.meter.records_per_s
        return Load(bps, rps, len(self.running), frozenset(self._cooling))

    async def take_assigned(self) -> None:
        """(If leading) assign; then start what the owner index says is ours and nothing here
        consumes: read back consistently (the index lags), taken again by this worker (a new
        take token, fenced on the counter read), parents finished first."""
        assert self.leader is not None
        now = self._clock.monotonic()
        self._cooling = {k: until for k, until in self._cooling.items() if until > now}
        was_leader = self.leader.is_leader
        owned = await self.leader.cycle(self._load())
        if self.leader.last.reassigned:  # assignees that did not take a lease in time
            self._metrics.add("PickupTimeouts", len(self.leader.last.reassigned))
        if self.leader.is_leader and (not was_leader or not self.leader.leases):
            await self.sync_shards()  # just elected, or no lease yet: create leases now
        if self.leader.is_leader:
            finished = sum(lease.finished for lease in self.leader.leases)
            if finished != self._finished_seen:  # a shard ended: create its children's leases
                self._finished_seen = finished
                self._last_sync = float("-inf")
            for lease in self.leader.leases:
                if lease.owner not in (None, self.worker_id):
                    self._failing_since.pop(lease.key, None)
        for key in owned:  # a running lease learns of a handoff from its renewals
            if key in self.running or key in self._cooling:
                continue
            row = await self._store.get(key)  # consistent: the index lags and has keys only
            if row is None or row.finished or row.owner != self.worker_id:
                continue
            if await self._released_held(row):
                continue
            if row.parents and not await self._parents_finished(row):
                continue
            taken = await self._store.take(row, self.worker_id)
            if taken is None:
                continue  # moved on meanwhile
            if key in self._ran:  # ours before, unconsumed: its release failed, say
                log.warning(
                    "restarting an orphaned lease",
                    extra={"shard": key, "checkpoint": taken.checkpoint},
                )
                self._metrics.add("LeasesRestarted", 1)
            else:
                self._metrics.add("LeasesTaken", 1)
                log.info("lease taken", extra={"shard": key, "checkpoint": taken.checkpoint})
            self._start(taken)

    async def _released_held(self, row: Lease) -> bool:
        """A lease assigned here that no consumer runs, held by a rewind (assigned just
        before the hold): nothing was read from it here, so release it at once, as asked."""
        if not row.held(self._clock.now()):
            return False
        if await self._store.release(replace(row, handoff_to=None)):
            log.info("released a lease for a rewind", extra={"shard": row.key})
            self._metrics.add("LeasesReleasedForRewind", 1)
        return True

    async def _parents_finished(self, lease: Lease) -> bool:
        """Every parent at SHARD_END or gone (read consistently: the index may lag)."""
        for parent in lease.parents:
            row = await self._store.get(parent)
            if row is not None and not row.finished:
                return False
        return True

    async def take_scanned(self) -> None:
        """Take free or expired leases up to the fair share, else steal one (see coordinator);
        restart any lease the table says is ours but nothing here consumes (an orphan: its
        release failed, or a renewal that timed out had in fact gone through)."""
        leases = await self._store.list_leases()
        now = self._clock.monotonic()
        self._observer.observe(leases, now)
        by_key = {lease.key: lease for lease in leases}
        self._cooling = {k: until for k, until in self._cooling.items() if until > now}
        for lease in leases:  # another worker has it now: its health, not ours
            if lease.owner not in (None, self.worker_id):
                self._failing_since.pop(lease.key, None)
        for lease in leases:
            if lease.key in self._cooling:
                continue
            mine = lease.owner == self.worker_id
            if mine and lease.key not in self.running and await self._released_held(lease):
                continue
            if mine and lease.key not in self.running and eligible(lease, by_key):
                # Taken again, not just restarted: a new take token fences out any consumer
                # of ours still holding the old one.
                retaken = await self._store.take(lease, self.worker_id)
                if retaken is None:
                    continue
                log.warning("restarting an orphaned lease", extra={"shard": lease.key})
                self._metrics.add("LeasesRestarted", 1)
                self._start(retaken)
        plan = plan_takes(
            self.worker_id,
            leases,
            self._observer,
            now,
            self.config.max_steal,
            self.config.balance.max_leases,
        )
        for lease in plan.take:
            if lease.key in self.running or lease.key in self._cooling:
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
        meter = ShardMeter(self._clock)
        consumer = ShardConsumer(
            lease,
            self._store,
            MeteredReader(self._reader, meter),
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
            end_on_empty_closed=cfg.end_on_empty_closed,
            poison_attempts=cfg.poison_attempts,
            poison_min_s=cfg.poison_min_s,
            executor=self._executor,
            processor_timeout_s=cfg.processor_timeout_s,
        )
        if lease.key in self._failing_since:  # the shard's checkpoint is as old as before
            consumer.checkpointed_at = self._failing_since.pop(lease.key)
        stop = asyncio.Event()
        task = asyncio.create_task(self._supervise(consumer, stop), name=f"shard-{lease.key}")
        self.running[lease.key] = _Running(consumer, task, stop, meter)
        self._ran.add(lease.key)

    async def _supervise(self, consumer: ShardConsumer, stop: asyncio.Event) -> Shutdown:
        """Run a shard's consumer; when it fails, whatever the failure, log it (rate-limited),
        count it, back off and run it again from the checkpoint, keeping the lease (the
        consumer itself decides when refused records are poison, see tributary_stream.poison).
        After `release_after_failures` runs in a row without a checkpoint, give the lease up
        (another worker may fare better) and leave it alone for `failing_cool_down_s`."""
        shard = consumer.shard_id
        while True:
            try:
                return await consumer.run(stop)
            except Exception as exc:  # noqa: BLE001 - the shard's crash boundary: log, rerun
                consumer.strikes += 1
                self._metrics.add("ShardFailures", 1, shard=shard)
                pause = self._backoff(consumer.strikes, self.config.restart_backoff_s)
                self._warn(
                    f"shard {shard}",
                    "shard consumer failed; rerunning it from the checkpoint",
                    level=logging.ERROR,
                    shard=shard,
                    error=f"{type(exc).__name__}: {exc}",
                    failures=consumer.strikes,
                    pause_s=round(pause, 2),
                )
                if consumer.strikes >= self.config.release_after_failures:
                    return self._give_up(consumer)
            await sleep_unless(pause, asyncio.sleep, stop, consumer.lost)
            if consumer.lost.is_set():
                return Shutdown.LEASE_LOST
            if stop.is_set():
                return Shutdown.REQUESTED

    def _give_up(self, consumer: ShardConsumer) -> Shutdown:
        cfg, shard = self.config, consumer.shard_id
        log.error(
            "shard keeps failing; giving its lease up for a cool-down",
            extra={
                "shard": shard,
                "failures": consumer.strikes,
                "cool_down_s": cfg.failing_cool_down_s,
            },
        )
        self._metrics.add("LeasesGivenUp", 1, shard=shard)
        until = self._clock.monotonic() + cfg.failing_cool_down_s
        self._cooling[shard] = until
        self._failing_since[shard] = consumer.checkpointed_at
        return Shutdown.GIVEN_UP

    async def reap(self) -> None:
        """Forget finished consumers; release leases of shards that ended."""
        for shard_id, running in list(self.running.items()):
            if not running.task.done():
                continue
            del self.running[shard_id]
            # Cancelled only when a drain ran out of time; nothing past the checkpoint counts.
            reason = Shutdown.REQUESTED if running.task.cancelled() else running.task.result()
            log.info("shard consumer stopped", extra={"shard": shard_id, "reason": reason})
            if reason is not Shutdown.LEASE_LOST:
                try:
                    if await self._store.release(running.consumer.lease):
                        self._ran.discard(shard_id)
                except TributaryError as exc:  # still ours in the table: take() restarts it
                    self._metrics.add("ReleaseFailures", 1, shard=shard_id)
                    log.warning(
                        "lease release failed; it stays ours until restarted or expired",
                        extra={"shard": shard_id, "error": str(exc)},
                    )

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
