"""Leases on shards, KCL 2.x style, and where they are stored.

A lease's `counter` is a fencing token: renew, take and release are conditional on it, so a
worker that lost a lease can never renew or release it again. A checkpoint is fenced on the owner
and the lease's take token instead: a random token each take writes (like KCL's concurrency
token, but stored) and nothing else changes. Renewals leave it alone, so a checkpoint in flight
is never fenced out by its own worker's renewals however slow the table, and a retried checkpoint
that had gone through is accepted again; every take replaces it, so a consumer whose lease was
taken can never checkpoint again, even when the lease has come back to the same worker since
(A, then B, then A again).

KCL 3-style additions: each worker reads the keys of the leases it owns through the
`leaseOwner-index` GSI (keys only: a renewal changes no projected attribute, so it writes
nothing to the index; eventually consistent: every decision taken from it is fenced), a lease
carries its shard's recent throughput (written by each renewal), and `handoffTo` asks the owner
to checkpoint and hand the lease over (`release` then writes the new owner). Rows whose key
starts with `_` are coordination rows (see tributary_stream.fleet), never leases.

A rewind (tributary_stack.replay.rewind) holds a lease first (`rewindHold`, epoch seconds, and
`rewindHoldId`): its owner sees the hold in its renewal and releases the lease, and `take` and
`force_handoff` are refused while the hold has not run out, so nobody takes it before the
rewind is recorded; `rewind` removes the hold. DynamoDB has no server clock in conditions: the
rewind's host writes `until` (now + 30 s, extended while it runs) and each worker's clock
decides whether it has run out, so the hold only works while their clocks agree to well under
30 s (NTP-synced hosts do; a host further off sees the hold born expired or longer).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary.clock import Clock, SystemClock
from tributary.errors import PermanentError
from tributary_stream.owner_index import OWNER_INDEX as OWNER_INDEX
from tributary_stream.owner_index import owner_index_error

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


class Checkpoint(StrEnum):
    """Checkpoint sentinels; any other checkpoint is a sequence number."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"
    SHARD_END = "SHARD_END"


@dataclass(frozen=True, slots=True)
class Lease:
    """One shard's lease as stored."""

    key: str  # the shard id
    owner: str | None
    counter: int
    checkpoint: str
    parents: frozenset[str] = frozenset()
    children: frozenset[str] = frozenset()
    owner_switches: int = 0  # takes since the last checkpoint (KCL's column; not a fence)
    token: str = ""  # the take token: written by each take, fences checkpoints
    # Per dataset, the last sequence number already landed in raw *beyond* the checkpoint
    # (an object adopted from another writer can reach past it); see tributary_stream.lander.
    landed: Mapping[str, str] = field(default_factory=dict)
    throughput_bps: float = 0.0  # bytes/s read from the shard recently (renewals write it)
    records_per_s: float = 0.0
    handoff_to: str | None = None  # the leader asked the owner to hand the lease to this worker
    # Where an AT_TIMESTAMP checkpoint resumes (a rewind writes it; see tributary_stack.replay).
    timestamp: datetime | None = None
    rewound: Rewound | None = None  # the last rewind applied to this lease
    # A rewind asked the owner to release (`rewindHold`): no take until the rewind is recorded
    # or the hold runs out (a rewind killed half way must not keep the shard unread for good).
    hold: RewindHold | None = None

    @property
    def finished(self) -> bool:
        """The shard was read to its end and everything landed."""
        return self.checkpoint == Checkpoint.SHARD_END

    def held(self, now: datetime) -> bool:
        """Whether a rewind holds this lease at `now` (its owner is asked to release it): until
        `hold.until` inclusive, to the millisecond, as DynamoDB's `rewindHold < :now` decides."""
        return self.hold is not None and round(self.hold.until, 3) >= round(now.timestamp(), 3)


@dataclass(frozen=True, slots=True)
class RewindHold:
    """A rewind in progress on a lease: its id, and until when (epoch seconds) takes wait."""

    rewind_id: str
    until: float


@dataclass(frozen=True, slots=True)
class Rewound:
    """Who rewound a lease, when, to where, under which rewind id (`rewound*` attributes)."""

    rewind_id: str
    by: str
    at: str  # ISO-8601 UTC
    to: str  # the point as given: an ISO time or TRIM_HORIZON
    how: str = ""  # "released" (the owner let go when asked), "fenced" (it did not), "free"


@dataclass(frozen=True, slots=True)
class RewindTo:
    """Where a rewind sets a lease: TRIM_HORIZON, or AT_TIMESTAMP with its timestamp."""

    checkpoint: Checkpoint
    timestamp: datetime | None
    landed: Mapping[str, str]  # chain → last sequence already in raw (adopted on replay)

    def check(self, key: str) -> None:
        """Refuse what DynamoDB and Kinesis would: a coordination row, a bad position."""
        if key.startswith(COORDINATION_PREFIX):
            raise PermanentError(f"lease table row {key!r} is a coordination row, not a lease")
        if self.checkpoint not in (Checkpoint.TRIM_HORIZON, Checkpoint.AT_TIMESTAMP):
            raise PermanentError(f"a rewind goes to TRIM_HORIZON or AT_TIMESTAMP, not {self}")
        if (self.checkpoint == Checkpoint.AT_TIMESTAMP) != (self.timestamp is not None):
            raise PermanentError("AT_TIMESTAMP needs a timestamp (and only it takes one)")


COORDINATION_PREFIX = "_"  # lease table keys of coordination rows (shard ids never start so)


class LeaseStore(Protocol):
    """Lease persistence with conditional (fenced) updates. Returns None when fenced out."""

    async def list_leases(self, consistent: bool = True) -> list[Lease]:
        """Every lease (a Scan), strongly consistent unless `consistent` is False."""

    async def list_owned(self, owner: str, consistent: bool = False) -> list[str]:
        """The keys of the leases `owner` holds, from the `leaseOwner` GSI (keys only, so a
        renewal costs the index nothing): eventually consistent (a GSI refuses
        `consistent=True` with a PermanentError, as DynamoDB does). A table without the index
        (or with it still backfilling) raises `missing_owner_index`'s ConfigError."""

    async def get(self, key: str) -> Lease | None:
        """One lease, strongly consistent; None if there is none for `key`."""

    async def create(self, lease: Lease) -> bool:
        """Create `lease` unless one exists for its shard; True if this call created it."""

    async def renew(self, lease: Lease) -> Lease | None:
        """Bump the counter and store `lease`'s throughput if `lease.owner` still holds it at
        `lease.counter`; returns the row as stored (a `handoff_to` shows up here); else None."""

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """Become the owner if the counter is still `lease.counter`; else None."""

    async def checkpoint(
        self, lease: Lease, checkpoint: str, landed: Mapping[str, str]
    ) -> Lease | None:
        """Store the checkpoint if `lease.owner` still holds it and nobody took it since
        (`lease.token` unchanged; the counter may have moved: renewals); else None."""

    async def release(self, lease: Lease) -> bool:
        """Give the lease up if still held (owner removed; or, when `lease.handoff_to` is set,
        the owner becomes that worker, whose next cycle takes it); True on success."""

    async def request_handoff(self, lease: Lease, to: str) -> bool:
        """Ask the owner to hand the lease to `to`, if nobody took it since `lease` was read
        (owner and take token unchanged); True on success."""

    async def cancel_handoff(self, lease: Lease, to: str) -> bool:
        """Withdraw the request to hand the lease to `to`, if it is still that request and
        owner and take token are unchanged (the owner's release to `to` then fails, and it
        restarts the lease); True on success."""

    async def force_handoff(self, lease: Lease, to: str) -> Lease | None:
        """The handoff to `to` timed out: make `to` the owner (counter + 1, new take token:
        the old owner is fenced out), if the request is still there and nobody took it since."""

    async def delete(self, lease: Lease) -> bool:
        """Delete a finished lease (SHARD_END) if unchanged since read (`lease.counter`)."""

    async def rewind(self, lease: Lease, to: RewindTo, record: Rewound) -> bool:
        """Set the checkpoint to `to`, free the lease (owner and `handoffTo` removed, counter
        + 1, new take token: the old owner's renew, checkpoint, release and a pending
        force_handoff all fail after it) and store `record`, if the counter is still
        `lease.counter` and `record.rewind_id` is not the last rewind applied; else False.
        A coordination row or a bad position is refused (PermanentError)."""

    async def hold_for_rewind(self, lease: Lease, hold: RewindHold) -> Lease | None:
        """Ask the owner to release for a rewind, and hold the lease against takes (and forced
        handoffs) until `hold.until` or the rewind: if the lease is there and `hold.rewind_id`
        is not the last rewind applied; the row as stored, else None. Holding again (a rerun)
        moves the hold on."""

    async def unhold(self, lease: Lease, rewind_id: str) -> bool:
        """Remove the hold of rewind `rewind_id` (a rewind that stops before recording), if it
        is still that rewind's hold; True if removed."""


class DynamoDbLeaseStore:
    """`LeaseStore` on a DynamoDB table keyed by `leaseKey` (KCL's layout plus `landedThrough`)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, clock: Clock | None = None) -> None:
        self._db = dynamodb
        self._table = table
        self._clock = clock or SystemClock()  # when a take may ignore a rewind's hold

    def _unheld(self) -> tuple[str, dict[str, Any]]:
        """The condition a take honours: no rewind hold, or one run out."""
        now = {":now": {"N": _number_exact(self._clock.now().timestamp())}}
        return " AND (attribute_not_exists(rewindHold) OR rewindHold < :now)", now

    async def list_leases(self, consistent: bool = True) -> list[Lease]:
        """Scan the table (paginated), coordination rows left out."""
        kwargs: dict[str, Any] = {"TableName": self._table, "ConsistentRead": consistent}
        items = await self._paged(lambda page: self._db.scan(**page), kwargs, "scan")
        return self._leases(items)

    async def list_owned(self, owner: str, consistent: bool = False) -> list[str]:
        """Query the `leaseOwner` GSI (KEYS_ONLY, paginated)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": "leaseOwner = :owner",
            "ExpressionAttributeValues": {":owner": {"S": owner}},
            "ConsistentRead": consistent,
        }
        try:
            items = await self._paged(lambda page: self._db.query(**page), kwargs, "query")
        except PermanentError as exc:
            cause = exc.__cause__
            if not consistent and isinstance(cause, ClientError):  # a consistent read is
                # refused for being one, index or not
                meaning = owner_index_error(self._table, error_code(cause), str(cause))
                if meaning is not None:
                    raise meaning from cause
            raise
        return sorted(item["leaseKey"]["S"] for item in items)

    @staticmethod
    def _leases(items: list[dict[str, Any]]) -> list[Lease]:
        return sorted((_parse(item) for item in items), key=lambda lease: lease.key)

    async def _paged(self, call: Any, kwargs: dict[str, Any], what: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        try:
            while True:
                page = await call(kwargs)
                items += [
                    item
                    for item in page.get("Items", [])
                    if not item.get("leaseKey", {}).get("S", "").startswith(COORDINATION_PREFIX)
                ]
                if "LastEvaluatedKey" not in page:
                    return items
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, what) from exc

    async def get(self, key: str) -> Lease | None:
        """GetItem, consistent read."""
        try:
            response = await self._db.get_item(
                TableName=self._table, Key={"leaseKey": {"S": key}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "get") from exc
        item = response.get("Item")
        return None if item is None else _parse(item)

    async def create(self, lease: Lease) -> bool:
        """PutItem unless the key exists."""
        return await self._conditional(
            self._db.put_item(
                TableName=self._table,
                Item=_to_item(lease),
                ConditionExpression="attribute_not_exists(leaseKey)",
            ),
            "create",
        )

    async def renew(self, lease: Lease) -> Lease | None:
        """counter + 1 and the throughput, if owner and counter are unchanged."""
        return await self._returning(
            self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=(
                    "SET leaseCounter = :next, throughputBps = :bps, recordsPerSecond = :rps"
                ),
                ConditionExpression="leaseCounter = :counter AND leaseOwner = :me",
                ExpressionAttributeValues={
                    ":next": {"N": str(lease.counter + 1)},
                    ":bps": {"N": _number(lease.throughput_bps)},
                    ":rps": {"N": _number(lease.records_per_s)},
                    ":counter": {"N": str(lease.counter)},
                    ":me": {"S": lease.owner or ""},
                },
                ReturnValues="ALL_NEW",
            ),
            "renew",
        )

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """New owner, counter + 1, owner switches + 1 and a new take token, if the counter is
        unchanged; returns the row as stored (a checkpoint may have landed since `lease` was
        read); refused while a rewind holds it."""
        unheld, now = self._unheld()
        return await self._returning(
            self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=(
                    "SET leaseOwner = :owner, leaseCounter = :next, takeToken = :token, "
                    "ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :one "
                    "REMOVE handoffTo"
                ),
                ConditionExpression="leaseCounter = :counter" + unheld,
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":token": {"S": new_token()},
                    ":next": {"N": str(lease.counter + 1)},
                    ":counter": {"N": str(lease.counter)},
                    ":one": {"N": "1"},
                    **now,
                },
                ReturnValues="ALL_NEW",
            ),
            "take",
        )

    async def checkpoint(
        self, lease: Lease, checkpoint: str, landed: Mapping[str, str]
    ) -> Lease | None:
        """Checkpoint and landed map, if owner and take token are unchanged."""
        if not lease.owner or not lease.token:
            return None  # never taken: nothing to fence on
        ok = await self._conditional(
            self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=(
                    "SET checkpoint = :cp, landedThrough = :landed, "
                    "ownerSwitchesSinceCheckpoint = :zero"
                ),
                ConditionExpression="leaseOwner = :me AND takeToken = :token",
                ExpressionAttributeValues={
                    ":cp": {"S": checkpoint},
                    ":landed": {"M": {k: {"S": v} for k, v in landed.items()}},
                    ":zero": {"N": "0"},
                    ":me": {"S": lease.owner},
                    ":token": {"S": lease.token},
                },
            ),
            "checkpoint",
        )
        if not ok:
            return None
        return replace(lease, checkpoint=checkpoint, landed=dict(landed), owner_switches=0)

    async def release(self, lease: Lease) -> bool:
        """Remove the owner (others take it at once), counter + 1; or hand it to
        `lease.handoff_to` if that request is still the stored one."""
        if lease.handoff_to:
            unheld, now = self._unheld()
            handed = await self._update(
                lease,
                "SET leaseOwner = :to, leaseCounter = :next REMOVE handoffTo",
                {":next": {"N": str(lease.counter + 1)}, ":to": {"S": lease.handoff_to}, **now},
                "release",
                " AND handoffTo = :to" + unheld,
            )
            if handed:
                return True
            # Held by a rewind: released to nobody instead (the rewind frees it once recorded).
            return await self._update(
                lease,
                "REMOVE leaseOwner, handoffTo SET leaseCounter = :next",
                {":next": {"N": str(lease.counter + 1)}, **now},
                "release",
                " AND rewindHold >= :now",
            )
        return await self._update(
            lease,
            "REMOVE leaseOwner, handoffTo SET leaseCounter = :next",
            {":next": {"N": str(lease.counter + 1)}},
            "release",
        )

    async def request_handoff(self, lease: Lease, to: str) -> bool:
        """SET handoffTo, if owner and take token are unchanged."""
        return await self._same_take_update(lease, to, "SET handoffTo = :to", "", "handoff")

    async def cancel_handoff(self, lease: Lease, to: str) -> bool:
        """REMOVE handoffTo, if it is `to` and owner and take token are unchanged."""
        return await self._same_take_update(
            lease, to, "REMOVE handoffTo", " AND handoffTo = :to", "cancel handoff"
        )

    async def _same_take_update(
        self, lease: Lease, to: str, update: str, condition: str, what: str
    ) -> bool:
        """`update` (`:to` is `to`), if owner and take token are still `lease`'s (and
        `condition`)."""
        if not lease.owner or not lease.token:
            return False
        return await self._conditional(
            self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=update,
                ConditionExpression="leaseOwner = :me AND takeToken = :token" + condition,
                ExpressionAttributeValues={
                    ":to": {"S": to},
                    ":me": {"S": lease.owner},
                    ":token": {"S": lease.token},
                },
            ),
            what,
        )

    async def force_handoff(self, lease: Lease, to: str) -> Lease | None:
        """New owner `to`, counter + 1, new take token, if the request and take token are
        unchanged (the counter may have moved: the old owner kept renewing)."""
        if not lease.token:
            return None
        unheld, now = self._unheld()
        return await self._returning(
            self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=(
                    "SET leaseOwner = :to, leaseCounter = leaseCounter + :one, "
                    "takeToken = :new, "
                    "ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :one "
                    "REMOVE handoffTo"
                ),
                ConditionExpression="handoffTo = :to AND takeToken = :token" + unheld,
                ExpressionAttributeValues={
                    ":to": {"S": to},
                    ":one": {"N": "1"},
                    ":new": {"S": new_token()},
                    ":token": {"S": lease.token},
                    **now,
                },
                ReturnValues="ALL_NEW",
            ),
            "force handoff",
        )

    async def delete(self, lease: Lease) -> bool:
        """DeleteItem, if the counter is unchanged and the lease is at SHARD_END."""
        return await self._conditional(
            self._db.delete_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                ConditionExpression="leaseCounter = :counter AND checkpoint = :end",
                ExpressionAttributeValues={
                    ":counter": {"N": str(lease.counter)},
                    ":end": {"S": Checkpoint.SHARD_END.value},
                },
            ),
            "delete",
        )

    async def rewind(self, lease: Lease, to: RewindTo, record: Rewound) -> bool:
        """One conditional UpdateItem (counter and rewind id: never twice, atomically)."""
        to.check(lease.key)
        values: dict[str, Any] = {
            ":cp": {"S": to.checkpoint.value},
            ":landed": {"M": {k: {"S": v} for k, v in to.landed.items()}},
            ":next": {"N": str(lease.counter + 1)},
            ":token": {"S": new_token()},
            ":zero": {"N": "0"},
            ":by": {"S": record.by},
            ":at": {"S": record.at},
            ":to": {"S": record.to},
            ":id": {"S": record.rewind_id},
            ":counter": {"N": str(lease.counter)},
        }
        update = (
            "SET checkpoint = :cp, landedThrough = :landed, leaseCounter = :next, "
            "takeToken = :token, ownerSwitchesSinceCheckpoint = :zero, rewoundBy = :by, "
            "rewoundAt = :at, rewoundTo = :to, rewindId = :id, rewoundHow = :how"
        )
        values[":how"] = {"S": record.how}
        remove = " REMOVE leaseOwner, handoffTo, rewindHold, rewindHoldId"
        if to.timestamp is not None:
            update += ", checkpointTimestamp = :ts"
            values[":ts"] = {"S": to.timestamp.isoformat()}
        else:
            remove += ", checkpointTimestamp"
        return await self._conditional(
            self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=update + remove,
                ConditionExpression=(
                    "leaseCounter = :counter AND "
                    "(attribute_not_exists(rewindId) OR rewindId <> :id)"
                ),
                ExpressionAttributeValues=values,
            ),
            "rewind",
        )

    async def hold_for_rewind(self, lease: Lease, hold: RewindHold) -> Lease | None:
        """SET rewindHold (until) and rewindHoldId, if the lease exists and this rewind was
        not the last applied (any owner, counter or token: the hold only refuses takes)."""
        if lease.key.startswith(COORDINATION_PREFIX):
            raise PermanentError(
                f"lease table row {lease.key!r} is a coordination row, not a lease"
            )
        try:
            response = await self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression="SET rewindHold = :until, rewindHoldId = :id",
                ConditionExpression=(
                    "attribute_exists(leaseKey) AND "
                    "(attribute_not_exists(rewindId) OR rewindId <> :id)"
                ),
                ExpressionAttributeValues={
                    ":until": {"N": _number_exact(hold.until)},
                    ":id": {"S": hold.rewind_id},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise _translate(exc, "rewind hold") from exc
        except BotoCoreError as exc:
            raise _translate(exc, "rewind hold") from exc
        return _parse(response.get("Attributes", {}))

    async def unhold(self, lease: Lease, rewind_id: str) -> bool:
        """REMOVE rewindHold and rewindHoldId, if rewindHoldId is still `rewind_id`."""
        return await self._conditional(
            self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression="REMOVE rewindHold, rewindHoldId",
                ConditionExpression="rewindHoldId = :id",
                ExpressionAttributeValues={":id": {"S": rewind_id}},
            ),
            "rewind unhold",
        )

    async def _update(
        self,
        lease: Lease,
        expression: str,
        values: dict[str, Any],
        what: str,
        condition: str = "",
    ) -> bool:
        return await self._conditional(
            self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=expression,
                ConditionExpression="leaseCounter = :counter AND leaseOwner = :me" + condition,
                ExpressionAttributeValues={
                    **values,
                    ":counter": {"N": str(lease.counter)},
                    ":me": {"S": lease.owner or ""},
                },
            ),
            what,
        )

    async def _returning(self, call: Any, what: str) -> Lease | None:
        """A conditional UpdateItem (ReturnValues ALL_NEW): the row as stored, or None when
        its condition failed."""
        response = await self._attempt(call, what)
        return None if response is None else _parse(response.get("Attributes", {}))

    async def _conditional(self, call: Any, what: str) -> bool:
        return await self._attempt(call, what) is not None

    @staticmethod
    async def _attempt(call: Any, what: str) -> dict[str, Any] | None:
        """The response of a conditional write, or None when its condition failed."""
        try:
            response: dict[str, Any] = await call
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise _translate(exc, what) from exc
        except BotoCoreError as exc:
            raise _translate(exc, what) from exc
        return response


def _to_item(lease: Lease) -> dict[str, Any]:
    item: dict[str, Any] = {
        "leaseKey": {"S": lease.key},
        "leaseCounter": {"N": str(lease.counter)},
        "checkpoint": {"S": lease.checkpoint},
        "ownerSwitchesSinceCheckpoint": {"N": str(lease.owner_switches)},
        "landedThrough": {"M": {k: {"S": v} for k, v in lease.landed.items()}},
    }
    if lease.owner:
        item["leaseOwner"] = {"S": lease.owner}
    if lease.token:
        item["takeToken"] = {"S": lease.token}
    if lease.parents:  # DynamoDB sets cannot be empty
        item["parentShardIds"] = {"SS": sorted(lease.parents)}
    if lease.children:
        item["childShardIds"] = {"SS": sorted(lease.children)}
    if lease.throughput_bps or lease.records_per_s:
        item["throughputBps"] = {"N": _number(lease.throughput_bps)}
        item["recordsPerSecond"] = {"N": _number(lease.records_per_s)}
    if lease.handoff_to:
        item["handoffTo"] = {"S": lease.handoff_to}
    return item


def _number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else "0"


def _number_exact(value: float) -> str:
    """Epoch seconds to the millisecond (`_number`'s 6 digits would round them to days)."""
    return f"{value:.3f}"


def _from_item(item: Mapping[str, Any]) -> Lease:
    return Lease(
        key=item["leaseKey"]["S"],
        owner=item.get("leaseOwner", {}).get("S"),
        counter=int(item["leaseCounter"]["N"]),
        checkpoint=item["checkpoint"]["S"],
        parents=frozenset(item.get("parentShardIds", {}).get("SS", [])),
        children=frozenset(item.get("childShardIds", {}).get("SS", [])),
        owner_switches=int(item.get("ownerSwitchesSinceCheckpoint", {}).get("N", "0")),
        landed={k: v["S"] for k, v in item.get("landedThrough", {}).get("M", {}).items()},
        token=item.get("takeToken", {}).get("S", ""),
        throughput_bps=float(item.get("throughputBps", {}).get("N", "0")),
        records_per_s=float(item.get("recordsPerSecond", {}).get("N", "0")),
        handoff_to=item.get("handoffTo", {}).get("S"),
        timestamp=_timestamp(item),
        rewound=_rewound(item),
        hold=_hold(item),
    )


def _hold(item: Mapping[str, Any]) -> RewindHold | None:
    if "rewindHold" not in item:
        return None
    return RewindHold(item.get("rewindHoldId", {}).get("S", ""), float(item["rewindHold"]["N"]))


def _rewound(item: Mapping[str, Any]) -> Rewound | None:
    if "rewindId" not in item:
        return None
    return Rewound(
        item["rewindId"]["S"],
        item.get("rewoundBy", {}).get("S", ""),
        item.get("rewoundAt", {}).get("S", ""),
        item.get("rewoundTo", {}).get("S", ""),
        item.get("rewoundHow", {}).get("S", ""),
    )


def _timestamp(item: Mapping[str, Any]) -> datetime | None:
    """`checkpointTimestamp` (ISO-8601, written by a rewind), only for an AT_TIMESTAMP row."""
    value = item.get("checkpointTimestamp", {}).get("S")
    if value is None or item["checkpoint"]["S"] != Checkpoint.AT_TIMESTAMP:
        return None
    return datetime.fromisoformat(value)


def new_token() -> str:
    """A take token: random, never reused."""
    return uuid.uuid4().hex


def _parse(item: Mapping[str, Any]) -> Lease:
    try:
        return _from_item(item)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PermanentError(
            f"lease table row {item.get('leaseKey', {}).get('S')!r} is not a lease ({exc!r}); "
            "is LEASE_TABLE shared with another application?"
        ) from exc


def _translate(exc: Exception, what: str) -> Exception:
    return translate_aws_error(exc, f"lease table {what}", "check LEASE_TABLE and IAM permissions")
