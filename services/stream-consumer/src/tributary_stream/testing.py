"""In-memory `LeaseStore` and `StreamReader`, with the same semantics as DynamoDB and Kinesis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tributary.errors import PermanentError, TransientError
from tributary_stream.aggregation import aggregate
from tributary_stream.lease import Checkpoint, Lease, new_token
from tributary_stream.processing import BATCH_SIZE, item_key, to_item
from tributary_stream.stream import (
    IteratorExpiredError,
    Page,
    Record,
    Shard,
    ThrottledError,
    user_records,
)


class MemoryLeaseStore:
    """`LeaseStore` over a dict; `fail_next(n)` injects transient failures."""

    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}
        self._failures = 0

    def fail_next(self, count: int) -> None:
        """The next `count` calls raise `TransientError`."""
        self._failures = count

    def _check(self) -> None:
        if self._failures:
            self._failures -= 1
            raise TransientError("lease table unavailable (fault injected)")

    def _held(self, lease: Lease) -> bool:
        stored = self.leases.get(lease.key)
        return (
            stored is not None
            and stored.counter == lease.counter
            and stored.owner == lease.owner
            and lease.owner is not None
        )

    async def list_leases(self) -> list[Lease]:
        """All leases by key."""
        self._check()
        return [self.leases[k] for k in sorted(self.leases)]

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
        self.leases[lease.key] = lease
        return True

    async def renew(self, lease: Lease) -> Lease | None:
        """Counter + 1 if held."""
        self._check()
        if not self._held(lease):
            return None
        renewed = replace(self.leases[lease.key], counter=lease.counter + 1)
        self.leases[lease.key] = renewed
        return renewed

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """New owner and take token if the counter is unchanged."""
        self._check()
        stored = self.leases.get(lease.key)
        if stored is None or stored.counter != lease.counter:
            return None
        taken = replace(
            stored,
            owner=owner,
            counter=stored.counter + 1,
            owner_switches=stored.owner_switches + 1,
            token=new_token(),
        )
        self.leases[lease.key] = taken
        return taken

    async def checkpoint(
        self, lease: Lease, checkpoint: str, landed: Mapping[str, str]
    ) -> Lease | None:
        """Store the checkpoint if owner and take token are unchanged."""
        self._check()
        stored = self.leases.get(lease.key)
        if (
            stored is None
            or not lease.owner
            or not lease.token
            or stored.owner != lease.owner
            or stored.token != lease.token
        ):
            return None
        updated = replace(
            self.leases[lease.key], checkpoint=checkpoint, landed=dict(landed), owner_switches=0
        )
        self.leases[lease.key] = updated
        return updated

    async def release(self, lease: Lease) -> bool:
        """Drop the owner if held."""
        self._check()
        if not self._held(lease):
            return False
        self.leases[lease.key] = replace(
            self.leases[lease.key], owner=None, counter=lease.counter + 1
        )
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
            index = next(
                (i for i, r in enumerate(records) if timestamp is None or r.arrival >= timestamp),
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
            return Page(out, None, 0, self.children[shard_id], tuple(empty))
        return Page(out, f"{shard_id}@{end}", max(0, len(records) - end) * 1000, None, tuple(empty))


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
