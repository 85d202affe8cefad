"""In-memory `LeaseStore` and `StreamReader`, with the same semantics as DynamoDB and Kinesis."""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from tributary.clock import Clock, SystemClock
from tributary.errors import PermanentError, TransientError
from tributary_stream.aggregation import aggregate
from tributary_stream.fleet import FleetView, WorkerBeat
from tributary_stream.lease import (
    COORDINATION_PREFIX,
    Checkpoint,
    Lease,
    RewindHold,
    RewindTo,
    Rewound,
    new_token,
)
from tributary_stream.owner_index import missing_owner_index, owner_index_backfilling
from tributary_stream.processing import BATCH_SIZE, item_key, to_item
from tributary_stream.stream import (
    IteratorExpiredError,
    Page,
    Record,
    Shard,
    ThrottledError,
    user_records,
)


class _Faults:
    """`fail_next(n)`: the next `n` calls raise `TransientError`."""

    _failures = 0

    def fail_next(self, count: int) -> None:
        """The next `count` calls raise `TransientError`."""
        self._failures = count

    def _check(self) -> None:
        if self._failures:
            self._failures -= 1
            raise TransientError("lease table unavailable (fault injected)")


class MemoryLeaseStore(_Faults):
    """`LeaseStore` over a dict; `fail_next(n)` injects transient failures.

    The owner index is a GSI: eventually consistent. With `index_lag_s` (and a `clock`) each
    write reaches it after a random delay of up to `index_lag_s` (in order, per lease), as
    DynamoDB propagates GSI updates; with `scan_lag_s`, an eventually consistent Scan returns
    each lease as it was up to `scan_lag_s` ago (a consistent one: as it is). Lags apply to
    writes made through the store's methods. `freeze_index()` makes `list_owned` answer from
    a snapshot until `thaw_index()`; a consistent read of the index is refused, and with
    `owner_index=False` (a table made before the GSI) every query of it is; with
    `owner_index="backfilling"` (the index still being built) every query is a TransientError
    until `owner_index` is set to True."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        index_lag_s: float = 0.0,
        scan_lag_s: float = 0.0,
        owner_index: bool | Literal["backfilling"] = True,
        seed: int = 0,
    ) -> None:
        if (index_lag_s or scan_lag_s) and clock is None:
            raise ValueError("an index or scan lag needs a clock")
        self.leases: dict[str, Lease] = {}
        self._index: dict[str, Lease] | None = None  # a frozen (lagging) owner index
        self.owner_index = owner_index  # set to True when a backfilling index becomes ACTIVE
        self._clock = clock
        self._index_lag = index_lag_s
        self._scan_lag = scan_lag_s
        self._rng = random.Random(seed)
        self._owners: dict[str, str] = {}  # the lagging index: lease → owner, as it shows them
        self._pending: list[tuple[float, int, str, str | None]] = []  # (visible at, seq, ...)
        self._visible_at: dict[str, float] = {}  # each lease's last pending index update
        self._seq = 0
        self._versions: dict[str, list[tuple[float, Lease | None]]] = {}  # for a lagging scan

    def _now(self) -> datetime:
        """When a rewind's hold is checked: the store's clock, or the system's."""
        return (self._clock or SystemClock()).now()

    def _put(self, key: str, lease: Lease | None) -> None:
        """Write (or, with None, delete) a lease; the lagging index and scan see it later."""
        if lease is None:
            self.leases.pop(key, None)
        else:
            self.leases[key] = lease
        if self._clock is None:
            return
        now = self._clock.monotonic()
        if self._index_lag:
            at = max(self._visible_at.get(key, now), now + self._rng.uniform(0, self._index_lag))
            self._visible_at[key] = at
            self._seq += 1
            heapq.heappush(self._pending, (at, self._seq, key, lease.owner if lease else None))
        if self._scan_lag:
            versions = self._versions.setdefault(key, [])
            versions.append((now, lease))
            while len(versions) > 1 and versions[1][0] <= now - self._scan_lag:
                versions.pop(0)  # older than any lagging read can go back to

    def _lagging_owners(self) -> dict[str, str]:
        assert self._clock is not None
        now = self._clock.monotonic()
        while self._pending and self._pending[0][0] <= now:
            _, _, key, owner = heapq.heappop(self._pending)
            if owner is None:
                self._owners.pop(key, None)
            else:
                self._owners[key] = owner
        return self._owners

    def _lagging_scan(self) -> list[Lease]:
        assert self._clock is not None
        now = self._clock.monotonic()
        rows = []
        for key in sorted(set(self.leases) | set(self._versions)):
            versions = self._versions.get(key)
            if not versions:  # written around the store's methods: as it is
                rows.append(self.leases[key])
                continue
            as_of = now - self._rng.uniform(0, self._scan_lag)
            seen = [lease for at, lease in versions if at <= as_of]
            lease = seen[-1] if seen else None  # none yet: created after `as_of`
            if lease is not None:
                rows.append(lease)
        return rows

    def freeze_index(self) -> None:
        """`list_owned` answers from the table as it is now until `thaw_index()`."""
        self._index = dict(self.leases)

    def thaw_index(self) -> None:
        """The owner index catches up."""
        self._index = None

    def _same_take(self, lease: Lease) -> Lease | None:
        """The stored row if `lease.owner` holds it under `lease.token` (nobody took it since
        `lease` was read: the checkpoint and handoff-request fence); else None."""
        stored = self.leases.get(lease.key)
        if stored is None or not lease.owner or not lease.token:
            return None
        return stored if (stored.owner, stored.token) == (lease.owner, lease.token) else None

    def _held(self, lease: Lease) -> bool:
        stored = self.leases.get(lease.key)
        return (
            stored is not None
            and stored.counter == lease.counter
            and stored.owner == lease.owner
            and lease.owner is not None
        )

    async def list_leases(self, consistent: bool = True) -> list[Lease]:
        """All leases by key (up to `scan_lag_s` old each when not `consistent`)."""
        self._check()
        if not consistent and self._scan_lag:
            return self._lagging_scan()
        return [self.leases[k] for k in sorted(self.leases)]

    async def list_owned(self, owner: str, consistent: bool = False) -> list[str]:
        """The keys of `owner`'s leases in the (possibly lagging) owner index."""
        self._check()
        if consistent:
            raise PermanentError(
                "lease table query refused (ValidationException: Consistent reads are not "
                "supported on global secondary indexes)"
            )
        if not self.owner_index:
            raise missing_owner_index(
                "memory", "ValidationException: The table does not have the specified index"
            )
        if self.owner_index == "backfilling":
            raise owner_index_backfilling(
                "memory", "ValidationException: Cannot read from backfilling global secondary index"
            )
        if self._index is None and self._index_lag:
            owners = self._lagging_owners()
            return [k for k in sorted(owners) if owners[k] == owner]
        rows = self.leases if self._index is None else self._index
        return [k for k in sorted(rows) if rows[k].owner == owner]

    async def get(self, key: str) -> Lease | None:
        """One lease, or None."""
        self._check()
        return self.leases.get(key)

    async def create(self, lease: Lease) -> bool:
        """Create unless present; an empty key is refused, as DynamoDB refuses it."""
        self._check()
        if not lease.key:
            raise PermanentError("lease table create refused (ValidationException: empty key)")
        if lease.key in self.leases:
            return False
        self._put(lease.key, lease)
        return True

    async def renew(self, lease: Lease) -> Lease | None:
        """Counter + 1 if held."""
        self._check()
        if not self._held(lease):
            return None
        renewed = replace(
            self.leases[lease.key],
            counter=lease.counter + 1,
            throughput_bps=lease.throughput_bps,
            records_per_s=lease.records_per_s,
        )
        self._put(lease.key, renewed)
        return renewed

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """New owner and take token if the counter is unchanged."""
        self._check()
        stored = self.leases.get(lease.key)
        if stored is None or stored.counter != lease.counter or stored.held(self._now()):
            return None
        taken = replace(
            stored,
            owner=owner,
            counter=stored.counter + 1,
            owner_switches=stored.owner_switches + 1,
            token=new_token(),
            handoff_to=None,
        )
        self._put(lease.key, taken)
        return taken

    async def checkpoint(
        self, lease: Lease, checkpoint: str, landed: Mapping[str, str]
    ) -> Lease | None:
        """Store the checkpoint if owner and take token are unchanged."""
        self._check()
        stored = self._same_take(lease)
        if stored is None:
            return None
        updated = replace(
            self.leases[lease.key],
            checkpoint=checkpoint,
            landed=dict(landed),
            owner_switches=0,
            # DynamoDB keeps `checkpointTimestamp`, but it means nothing past AT_TIMESTAMP.
            timestamp=stored.timestamp if checkpoint == Checkpoint.AT_TIMESTAMP else None,
        )
        self._put(lease.key, updated)
        return updated

    async def release(self, lease: Lease) -> bool:
        """Drop the owner if held, or hand it to `lease.handoff_to` if still requested."""
        self._check()
        if not self._held(lease):
            return False
        stored = self.leases[lease.key]
        if lease.handoff_to and stored.handoff_to != lease.handoff_to:
            return False
        to = None if stored.held(self._now()) else lease.handoff_to  # held: to nobody
        self._put(
            lease.key,
            replace(stored, owner=to or None, counter=lease.counter + 1, handoff_to=None),
        )
        return True

    async def request_handoff(self, lease: Lease, to: str) -> bool:
        """Set `handoff_to` if owner and take token are unchanged."""
        self._check()
        stored = self._same_take(lease)
        if stored is None:
            return False
        self._put(lease.key, replace(stored, handoff_to=to))
        return True

    async def cancel_handoff(self, lease: Lease, to: str) -> bool:
        """Remove `handoff_to` if it is `to` and owner and take token are unchanged."""
        self._check()
        stored = self._same_take(lease)
        if stored is None or stored.handoff_to != to:
            return False
        self._put(lease.key, replace(stored, handoff_to=None))
        return True

    async def force_handoff(self, lease: Lease, to: str) -> Lease | None:
        """Make `to` the owner if the request and take token are unchanged."""
        self._check()
        stored = self.leases.get(lease.key)
        if stored is None or not lease.token or stored.handoff_to != to:
            return None
        if stored.token != lease.token or stored.held(self._now()):
            return None
        forced = replace(
            stored,
            owner=to,
            counter=stored.counter + 1,
            token=new_token(),
            owner_switches=stored.owner_switches + 1,
            handoff_to=None,
        )
        self._put(lease.key, forced)
        return forced

    async def delete(self, lease: Lease) -> bool:
        """Delete if the counter is unchanged and the lease is at SHARD_END."""
        self._check()
        stored = self.leases.get(lease.key)
        if stored is None or stored.counter != lease.counter or not stored.finished:
            return False
        self._put(lease.key, None)
        return True

    async def rewind(self, lease: Lease, to: RewindTo, record: Rewound) -> bool:
        """Free the lease at `to` if the counter is unchanged and this rewind is new."""
        self._check()
        to.check(lease.key)
        stored = self.leases.get(lease.key)
        if stored is None or stored.counter != lease.counter:
            return False
        if stored.rewound is not None and stored.rewound.rewind_id == record.rewind_id:
            return False
        self._put(
            lease.key,
            replace(
                stored,
                owner=None,
                handoff_to=None,
                counter=stored.counter + 1,
                token=new_token(),
                checkpoint=to.checkpoint.value,
                timestamp=to.timestamp,
                landed=dict(to.landed),
                owner_switches=0,
                rewound=record,
                hold=None,
            ),
        )
        return True

    async def hold_for_rewind(self, lease: Lease, hold: RewindHold) -> Lease | None:
        """Hold the lease for a rewind unless it is gone or this rewind was applied already."""
        self._check()
        if lease.key.startswith(COORDINATION_PREFIX):
            raise PermanentError(
                f"lease table row {lease.key!r} is a coordination row, not a lease"
            )
        stored = self.leases.get(lease.key)
        if stored is None or (stored.rewound and stored.rewound.rewind_id == hold.rewind_id):
            return None
        held = replace(stored, hold=hold)
        self._put(lease.key, held)
        return held

    async def unhold(self, lease: Lease, rewind_id: str) -> bool:
        """Remove the hold if it is still rewind `rewind_id`'s."""
        self._check()
        stored = self.leases.get(lease.key)
        if stored is None or stored.hold is None or stored.hold.rewind_id != rewind_id:
            return False
        self._put(lease.key, replace(stored, hold=None))
        return True


class MemoryStream:
    """A Kinesis-like stream in memory: shards of records, iterators as (shard, index) tokens.

    `close(shard, children)` ends a shard like a split or merge: reads past its last record
    return no iterator and the children. `throttle_next(n)` injects throttling.
    """

    def __init__(self, shard_count: int = 1) -> None:
        self.shards: dict[str, list[Record]] = {f"shardId-{i:012d}": [] for i in range(shard_count)}
        self.parents: dict[str, frozenset[str]] = {s: frozenset() for s in self.shards}
        self.children: dict[str, frozenset[str]] = {}
        self._sequence = 0
        self._throttles = 0
        self.expire_iterators = False
        self.calls = 0

    def put(
        self,
        shard_id: str,
        data: bytes,
        partition_key: str = "pk",
        arrival: datetime | None = None,
        aggregated: list[bytes] | None = None,
    ) -> str:
        """Append a record (a KPL aggregate of `aggregated` when given); returns its sequence."""
        if shard_id in self.children:
            raise ValueError(f"{shard_id} is closed")
        self._sequence += 1
        sequence = f"{self._sequence:056d}"
        at = arrival or datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        if aggregated is not None:
            data = aggregate([(partition_key, part) for part in aggregated])
        self.shards[shard_id].append(Record(sequence, 0, partition_key, data, at))
        return sequence

    def close(self, shard_id: str, children: list[str], parents_of_children: list[str]) -> None:
        """End `shard_id`; create `children` whose parents are `parents_of_children`."""
        self.children[shard_id] = frozenset(children)
        for child in children:
            self.shards.setdefault(child, [])
            self.parents[child] = frozenset(parents_of_children)

    def throttle_next(self, count: int) -> None:
        """The next `count` GetRecords calls are throttled."""
        self._throttles = count

    async def list_shards(self) -> list[Shard]:
        """Shards with parents and, when closed, their ending sequence number."""
        return [
            Shard(
                s,
                self.parents[s],
                (self.shards[s][-1].sequence if self.shards[s] else "0")
                if s in self.children
                else None,
            )
            for s in self.shards
        ]

    async def iterator(self, shard_id: str, position: str, timestamp: datetime | None) -> str:
        """A token `<shard>@<index>`."""
        records = self.shards[shard_id]
        if position == Checkpoint.TRIM_HORIZON:
            index = 0
        elif position == Checkpoint.LATEST:
            index = len(records)
        elif position == Checkpoint.AT_TIMESTAMP:
            if timestamp is None:  # Kinesis: InvalidArgumentException
                raise PermanentError(
                    "GetShardIterator refused (InvalidArgumentException: a Timestamp is "
                    "required for ShardIteratorType AT_TIMESTAMP)"
                )
            index = next(
                (i for i, r in enumerate(records) if r.arrival >= timestamp),
                len(records),
            )
        else:
            index = next(
                (i + 1 for i, r in enumerate(records) if int(r.sequence) >= int(position)),
                len(records),
            )
        return f"{shard_id}@{index}"

    async def get_records(self, iterator: str, limit: int) -> Page:
        """Up to `limit` Kinesis records (deaggregated into user records)."""
        self.calls += 1
        if self._throttles:
            self._throttles -= 1
            raise ThrottledError("throttled (fault injected)")
        if self.expire_iterators:
            self.expire_iterators = False
            raise IteratorExpiredError("expired (fault injected)")
        shard_id, _, index_text = iterator.partition("@")
        index = int(index_text)
        records = self.shards[shard_id]
        chunk = records[index : index + limit]
        out: list[Record] = []
        empty: list[str] = []
        for r in chunk:
            parts = user_records(r.sequence, r.partition_key, r.data, r.arrival)
            out += parts
            if not parts:
                empty.append(r.sequence)
        end = index + len(chunk)
        closed = shard_id in self.children
        if closed and end >= len(records):
            return Page(out, None, 0, self.children[shard_id], len(chunk), tuple(empty))
        behind = max(0, len(records) - end) * 1000
        return Page(out, f"{shard_id}@{end}", behind, None, len(chunk), tuple(empty))


class MemoryItemSink:
    """`ItemSink` in a dict keyed like the DynamoDB one (`<dataset>#<id>`), refusing what
    DynamoDB refuses: repeated keys in one call of 25 (the whole call), unstorable items.
    `fail_next(n)` injects transient failures, `refuse` a permanent one (a 403, say)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, object]] = {}
        self.puts = 0
        self.refuse: str | None = None
        self._failures = 0

    def fail_next(self, count: int) -> None:
        """The next `count` calls raise `TransientError`."""
        self._failures = count

    async def put_items(self, items: Sequence[dict[str, Any]]) -> dict[int, str]:
        """Upsert every item, 25 per call; what DynamoDB refuses is refused before any write
        by the same checks (`to_item`), so nothing is left to refuse one by one."""
        self.puts += 1
        if self.refuse is not None:
            raise PermanentError(f"BatchWriteItem refused ({self.refuse}) (fault injected)")
        if self._failures:
            self._failures -= 1
            raise TransientError("items table unavailable (fault injected)")
        checked = [(item_key(item), to_item(item), item) for item in items]
        for start in range(0, len(checked), BATCH_SIZE):
            keyed = checked[start : start + BATCH_SIZE]
            if len({key for key, _, _ in keyed}) < len(keyed):
                raise PermanentError(
                    "BatchWriteItem refused (ValidationException: Provided list of item keys "
                    "contains duplicates)"
                )
            for key, _, item in keyed:
                self.items[key] = dict(item)
        return {}


class MemoryFleetStore(_Faults):
    """`FleetStore` over a dict, with the DynamoDB one's conditions; `fail_next(n)` injects
    transient failures."""

    def __init__(self) -> None:
        self.workers: dict[str, WorkerBeat] = {}
        self.leader: str | None = None
        self.leader_counter = 0
        self._failures = 0

    def view(self) -> FleetView:
        """The row as stored."""
        return FleetView(self.leader, self.leader_counter, dict(self.workers))

    async def beat(self, beat: WorkerBeat) -> FleetView:
        """Store the beat; the row after it."""
        self._check()
        self.workers[beat.worker_id] = beat
        return self.view()

    async def claim_leader(self, me: str, seen: FleetView) -> bool:
        """Claim if the lock is as seen."""
        self._check()
        if seen.leader is None:
            if self.leader is not None or self.leader_counter != seen.leader_counter:
                return False
        elif (self.leader, self.leader_counter) != (seen.leader, seen.leader_counter):
            return False
        self.leader, self.leader_counter = me, seen.leader_counter + 1
        return True

    async def renew_leader(self, me: str, counter: int) -> bool:
        """Bump the counter if held."""
        self._check()
        if (self.leader, self.leader_counter) != (me, counter):
            return False
        self.leader_counter = counter + 1
        return True

    async def resign(self, me: str, counter: int) -> bool:
        """Free the lock if held."""
        self._check()
        if (self.leader, self.leader_counter) != (me, counter):
            return False
        self.leader = None
        return True

    async def forget(self, me: str, workers: list[str]) -> bool:
        """Drop beats if `me` leads."""
        self._check()
        if self.leader != me:
            return False
        for worker in workers:
            self.workers.pop(worker, None)
        return True

    async def leave(self, me: str) -> None:
        """Drop own beat."""
        self._check()
        self.workers.pop(me, None)
