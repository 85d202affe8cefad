"""`rewind --to <time | TRIM_HORIZON>`: consume a stream again from an earlier point.

First the running workers are asked to let go: every lease to rewind gets a hold
(`LeaseStore.hold_for_rewind`: `rewindHold`, `HOLD_S` ahead, extended while the rewind runs),
which its owner reads in its next renewal and answers like a handoff (the shard's consumer
stops, lands and checkpoints what it read, and the lease is released to nobody, a pending
handoff included), and which every take and forced handoff honours, so no worker takes the
lease again until the rewind is recorded. A rewind that stops before recording (an error,
Ctrl-C) removes its holds on the way out; one killed outright (SIGKILL) stops extending them, so
the shard is read on from its old checkpoint at most `HOLD_S` later. The hold's deadline is
written by this host's clock and read by each worker's (DynamoDB conditions have no server
time): hosts whose clocks differ by more than a fraction of `HOLD_S` see it born expired or
longer (see tributary_stream.lease). The rewind waits for each owner to release the row to
nobody, with progress, up to `--release-timeout`; an owner still on the row when it is rewound
(a dead or stuck worker, or one that took it once a hold lapsed) is fenced, as below. The row
says which (`rewoundHow`: released, fenced, or free).

Then per shard, one conditional update of its lease row through `LeaseStore.rewind` (on the counter
just read, and on this rewind id not being on the row yet, so the same rewind never applies twice):
the checkpoint becomes `AT_TIMESTAMP` (with `checkpointTimestamp`) or `TRIM_HORIZON`, the owner
and any pending `handoffTo` are removed, the counter and take token change (so the old owner's
next renewal or checkpoint fails: it stops without checkpointing, as after any lost lease, and a
pending forced handoff fails too), and the row records who
rewound it, when, to where, under which rewind id. Any worker then takes the free lease and
resumes there. Nothing else about lease management is assumed.

Replayed records are adopted, not duplicated: raw objects are chained per shard and target
(`tributary_stream.lander`): the key of each object is `<shard>-<its first sequence number>`
and each starts right after the previous one's last record. A replay from the start of an
object walks the same chain (every key exists: 412, adopt, go on). A rewind point lands inside
an object in general, so for each chain the object holding the first record at or after the
point is looked up, and its last sequence number becomes the lease's `landedThrough` for that
chain: the replay skips what it holds and meets the next object's key exactly.

A rewind never moves a checkpoint forward: a shard whose checkpoint is already before the point
is left alone. A lease already rewound under the same rewind id is skipped, so running the same
rewind twice, or again after it was killed half way, rewinds each shard once.

Workers delete a finished parent's lease once its children have started (KCL 3), so a closed
shard without a lease that still holds records at or after the point cannot be replayed: the
rewind refuses before touching any lease, rather than replay the children alone.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from tributary.clock import Clock, iso_utc
from tributary.errors import PermanentError, TransientError
from tributary.layout import Zone, parse_key, partition_prefix
from tributary.raw_writer import META_LAST, RawWriter
from tributary_stream.lease import Checkpoint, Lease, LeaseStore, RewindHold, RewindTo, Rewound
from tributary_stream.stream import StreamReader

DELETED = (
    " (they were split or merged: workers delete a finished parent's lease once its children "
    "have started, so a rewind cannot replay what they held)"
)
MAX_PAGES = 50  # GetRecords pages read to find the first record after the point
MAX_ATTEMPTS = 50  # conditional updates tried per lease (its worker renews it meanwhile)
HOLD_S = 30.0  # how far ahead a hold runs; extended while the rewind runs (a killed one lapses)
POLL_S = 0.5  # how often the rows of the leases being released are read


class Release(StrEnum):
    """How a rewound lease's owner let go of it."""

    RELEASED = "released"  # it checkpointed and released when asked
    FENCED = "fenced"  # it did not answer within the release timeout: fenced out
    FREE = "free"  # nobody held it


class Action(StrEnum):
    """What a rewind does (or did) to one shard."""

    REWIND = "rewind"
    ALREADY_BEFORE = "already before"  # the checkpoint is before the point: left alone
    NOTHING_AFTER = "nothing after"  # no record at or after the point: nothing to replay
    DONE = "done earlier"  # rewound under this rewind id by an earlier run


@dataclass(frozen=True, slots=True)
class RewindPoint:
    """Where to resume: a time, or None for TRIM_HORIZON."""

    at: datetime | None

    @property
    def checkpoint(self) -> Checkpoint:
        """The checkpoint sentinel a rewound lease gets."""
        return Checkpoint.TRIM_HORIZON if self.at is None else Checkpoint.AT_TIMESTAMP

    def __str__(self) -> str:
        return "TRIM_HORIZON" if self.at is None else iso_utc(self.at)


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """What a rewind does to one shard and why."""

    shard: str
    owner: str | None
    checkpoint: str
    action: Action
    first: str | None = None  # the first sequence number at or after the point
    landed: Mapping[str, str] = field(default_factory=dict)  # chain → last landed (adopted)
    release: Release | None = None  # how the owner let go (a rewind applied by this run)


def rewind_id(point: RewindPoint, shards: Sequence[str]) -> str:
    """The default id of a rewind: the same point and shards give the same id."""
    text = f"{point}\n{','.join(sorted(shards))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def nothing_new(plans: Sequence[ShardPlan], request: RewindRequest, explicit_id: bool) -> str:
    """Why a rewind under the default id changed nothing although it was meant to ("" when it
    did something, or its id was given): the same `--to` and shards give the same id, so a new
    rewind to a point used before finds every shard "done earlier"."""
    if explicit_id or not plans or any(p.action is not Action.DONE for p in plans):
        return ""
    return (
        f"every shard was rewound earlier under rewind id {request.rewind_id} (the same --to "
        "and shards give the same id), so nothing changed; to rewind to this point again, "
        "pass a new --id"
    )


async def first_at(
    reader: StreamReader, shard: str, point: RewindPoint
) -> tuple[str, datetime] | None:
    """The first Kinesis record of `shard` at or after `point` (sequence, arrival), or None
    when the shard has none; TransientError when `MAX_PAGES` pages could not tell."""
    iterator: str | None = await reader.iterator(shard, point.checkpoint, point.at)
    for _ in range(MAX_PAGES):
        if iterator is None:
            return None
        page = await reader.get_records(iterator, 100)
        found = [(int(r.sequence), r.arrival) for r in page.records]
        if found:
            sequence, arrival = min(found)
            empty = [int(s) for s in page.empty_aggregates if int(s) < sequence]
            return str(min([sequence, *empty])), arrival
        if page.millis_behind == 0 or page.children:
            return None
        iterator = page.next_iterator
    raise TransientError(
        f"shard {shard}: no record at or after {point} in {MAX_PAGES} pages of GetRecords and "
        "the shard is still behind (sparse or expired data); run the same rewind again"
    )


def _writer_and_first(name: str) -> tuple[str, int] | None:
    writer, _, first = name.rpartition("-")
    return (writer, int(first)) if writer and first.isdigit() else None


async def chain_positions(
    store: RawWriter,
    datasets: Sequence[str],
    shard: str,
    first: int,
    arrival: datetime,
    lookback: timedelta,
) -> dict[str, str]:
    """Per chain of `shard` (a `landedThrough` key), the last sequence number of the object that
    holds `first` (a record arriving at `arrival`), for the chains where one does. An object
    spans at most the consumer's batch age, so `lookback` hours before `arrival` suffice."""
    best: dict[str, tuple[int, str]] = {}  # chain → (first sequence, key) of the last object
    hour = (arrival - lookback).replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour <= arrival:
        hours.append(hour)
        hour += timedelta(hours=1)
    for zone in (Zone.RAW, Zone.QUARANTINE):
        for dataset in datasets:
            for at in hours:
                for key in await store.keys(partition_prefix(zone, dataset, at) + shard):
                    parsed = parse_key(key)
                    split = _writer_and_first(parsed.name) if parsed else None
                    if split is None:
                        continue
                    writer, start = split
                    if writer == shard:
                        chain = f"{zone}/{dataset}"
                    elif writer.startswith(f"{shard}."):
                        chain = f"{writer.removeprefix(shard + '.')}:{zone}/{dataset}"
                    else:
                        continue
                    if start < first and (chain not in best or start > best[chain][0]):
                        best[chain] = (start, key)
    landed: dict[str, str] = {}
    for chain, (_, key) in sorted(best.items()):
        info = await store.head(key)
        last = (info.metadata.get(META_LAST, "") if info else "").strip()
        if last.isdigit() and int(last) >= first:
            landed[chain] = last
    return landed


def plan_shard(
    lease: Lease,
    point: RewindPoint,
    found: tuple[str, datetime] | None,
    done_by: str | None,
    this_rewind: str,
) -> Action:
    """Whether to rewind a shard: never forward, never twice under one rewind id."""
    if done_by == this_rewind:
        return Action.DONE
    if found is None:
        return Action.NOTHING_AFTER
    checkpoint = lease.checkpoint
    if checkpoint == Checkpoint.TRIM_HORIZON:
        return Action.ALREADY_BEFORE
    if checkpoint == Checkpoint.AT_TIMESTAMP and point.at is not None:
        if lease.timestamp is not None and lease.timestamp <= point.at:
            return Action.ALREADY_BEFORE
        return Action.REWIND
    if checkpoint.isdigit() and int(checkpoint) < int(found[0]):
        return Action.ALREADY_BEFORE  # the worker has not reached the point yet
    return Action.REWIND  # a sequence number past it, SHARD_END, or LATEST


@dataclass(frozen=True, slots=True)
class RewindRequest:
    """One `rewind` command."""

    point: RewindPoint
    shards: frozenset[str]  # empty: every shard
    by: str
    rewind_id: str
    lookback: timedelta = timedelta(hours=2)
    dry_run: bool = False
    release_timeout_s: float = 60.0  # how long owners get to release before they are fenced


class Rewinder:
    """Plans and applies a rewind, shard by shard, through its collaborators."""

    def __init__(
        self,
        leases: LeaseStore,
        reader: StreamReader,
        lake: RawWriter,
        datasets: Sequence[str],
        clock: Clock,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._leases = leases
        self._reader = reader
        self._lake = lake
        self._datasets = datasets
        self._clock = clock
        self._progress = progress
        self._holding: dict[str, Lease] = {}  # shard → lease held by the run in progress
        self._until = 0.0  # until when those holds run

    async def run(self, request: RewindRequest) -> list[ShardPlan]:
        """Every selected shard's plan, applied unless `request.dry_run`."""
        leases = await self._leases.list_leases()  # coordination rows (`_fleet`) left out
        known = {lease.key for lease in leases}
        closed = {s.shard_id for s in await self._reader.list_shards() if s.ending_sequence}
        missing = sorted(request.shards - known)
        if missing:
            raise PermanentError(
                f"no lease for shard(s) {', '.join(missing)}; the stream's leases are "
                f"{', '.join(sorted(known)) or 'none (no worker has run yet)'}"
                + (DELETED if set(missing) & closed else "")
            )
        if not request.shards:
            gone = [
                s for s in sorted(closed - known) if await first_at(self._reader, s, request.point)
            ]
            if gone:
                raise PermanentError(
                    f"shard(s) {', '.join(gone)} hold records at or after {request.point} but "
                    f"have no lease{DELETED}; nothing was rewound. Rewind to a point after they "
                    "closed, or name the open shards with --shard"
                )
        chosen = [lease for lease in leases if not request.shards or lease.key in request.shards]
        found = {
            lease.key: await first_at(self._reader, lease.key, request.point) for lease in chosen
        }
        self._holding = {}
        self._until = 0.0
        try:
            released = {} if request.dry_run else await self._release(chosen, found, request)
            plans: list[ShardPlan] = []
            for lease in chosen:
                await self._extend(request)
                plans.append(
                    await self._one(lease, request, found[lease.key], released.get(lease.key))
                )
            return plans
        finally:  # an error or a cancellation (Ctrl-C): nobody waits for a hold to lapse
            await self._unhold(request.rewind_id)

    async def _extend(self, request: RewindRequest, force: bool = False) -> None:
        """Move the holds this run set `HOLD_S` ahead (once a third of it has passed)."""
        now = self._clock.now().timestamp()
        if not force and now < self._until - HOLD_S * 2 / 3:
            return
        self._until = now + HOLD_S
        for shard, lease in list(self._holding.items()):
            held = await self._leases.hold_for_rewind(
                lease, RewindHold(request.rewind_id, self._until)
            )
            if held is None:  # rewound meanwhile (this run or another): the hold went with it
                del self._holding[shard]

    async def _unhold(self, rewind_id: str) -> None:
        for shard, lease in sorted(self._holding.items()):
            try:
                await self._leases.unhold(lease, rewind_id)  # False: rewound, hold gone with it
            except (TransientError, PermanentError) as exc:
                self._progress(f"{shard}: could not remove the rewind hold ({exc}); it lapses")
        self._holding = {}

    async def _release(
        self,
        chosen: Sequence[Lease],
        found: Mapping[str, tuple[str, datetime] | None],
        request: RewindRequest,
    ) -> dict[str, tuple[str | None, Release]]:
        """Hold every lease this rewind moves and wait (bounded) for its owner to release it;
        per shard, the owner it had and how it let go."""
        self._until = until = self._clock.now().timestamp() + HOLD_S
        waiting: dict[str, str] = {}  # shard → the owner asked to release
        released: dict[str, tuple[str | None, Release]] = {}
        for lease in chosen:
            lease = await self._reread(lease.key)
            done_by = lease.rewound.rewind_id if lease.rewound else None
            action = plan_shard(lease, request.point, found[lease.key], done_by, request.rewind_id)
            if action is not Action.REWIND:
                continue
            held = await self._leases.hold_for_rewind(lease, RewindHold(request.rewind_id, until))
            if held is None:
                continue  # applied meanwhile by another run: the plan below says so
            self._holding[lease.key] = held
            if held.owner is None:
                released[lease.key] = (None, Release.FREE)
            else:
                waiting[lease.key] = held.owner
                self._progress(f"{lease.key}: asked {held.owner} to release it")
        deadline = self._clock.monotonic() + request.release_timeout_s
        while waiting:
            await self._extend(request)
            for shard, owner in list(waiting.items()):
                row = await self._reread(shard)
                if row.owner is None:  # to nobody (a handoff under a hold goes to nobody too)
                    released[shard] = (owner, Release.RELEASED)
                    del waiting[shard]
                    self._progress(f"{shard}: released by {owner}")
            left = deadline - self._clock.monotonic()
            if not waiting or left <= 0:
                break
            self._progress(
                f"waiting for {len(waiting)} lease(s) to be released "
                f"({', '.join(sorted(waiting))}; {left:.0f} s left)"
            )
            await asyncio.sleep(min(POLL_S, left))
        for shard, owner in sorted(waiting.items()):
            released[shard] = (owner, Release.FENCED)
            self._progress(
                f"{shard}: {owner} did not release it in {request.release_timeout_s:g} s "
                "(dead or stuck?); fencing it out"
            )
        return released

    async def _one(
        self,
        lease: Lease,
        request: RewindRequest,
        found: tuple[str, datetime] | None,
        released: tuple[str | None, Release] | None,
    ) -> ShardPlan:
        landed: dict[str, str] | None = None
        owner = released[0] if released else lease.owner
        lease = await self._reread(lease.key)
        for _ in range(MAX_ATTEMPTS):
            done_by = lease.rewound.rewind_id if lease.rewound else None
            action = plan_shard(lease, request.point, found, done_by, request.rewind_id)
            if action is Action.REWIND and found is not None and landed is None:
                landed = await chain_positions(
                    self._lake,
                    self._datasets,
                    lease.key,
                    int(found[0]),
                    found[1],
                    request.lookback,
                )
                await self._extend(request)
                lease = await self._reread(lease.key)  # the listing took a while
                done_by = lease.rewound.rewind_id if lease.rewound else None
                action = plan_shard(lease, request.point, found, done_by, request.rewind_id)
            # Fenced whenever the row still has an owner now, whatever the wait saw: a worker
            # may have taken it since (a hold lapsed, or a clock saw it lapsed).
            if lease.owner is not None:
                how = Release.FENCED
            elif released and released[0] is not None:
                how = Release.RELEASED
            else:
                how = Release.FREE
            plan = ShardPlan(
                lease.key,
                owner if released and lease.owner is None else lease.owner,
                lease.checkpoint,
                action,
                found[0] if found else None,
                landed or {},
                how if released and action is Action.REWIND else None,
            )
            if action is not Action.REWIND or request.dry_run:
                return plan
            # Conditional on the counter only: renewals move it (so the update is retried
            # on a fresh read right away), and a checkpoint only moves forward, so the plan
            # and the chain positions still hold whatever checkpoint landed meanwhile.
            to = RewindTo(request.point.checkpoint, request.point.at, landed or {})
            record = Rewound(
                request.rewind_id, request.by, iso_utc(self._clock.now()), str(request.point), how
            )
            if await self._leases.rewind(lease, to, record):
                return plan
            lease = await self._reread(lease.key)
        raise TransientError(
            f"the lease of {lease.key} changed {MAX_ATTEMPTS} times while being rewound; "
            "run the same rewind again (it skips the shards already done)"
        )

    async def _reread(self, shard: str) -> Lease:
        lease = await self._leases.get(shard)
        if lease is None:
            raise PermanentError(f"the lease of {shard} disappeared during the rewind")
        return lease
