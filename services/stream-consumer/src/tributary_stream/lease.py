"""Leases on shards, KCL 2.x style, and where they are stored.

A lease's `counter` is a fencing token: renew, take and release are conditional on it, so a
worker that lost a lease can never renew or release it again. A checkpoint is fenced on the owner
and the lease's take token instead: a random token each take writes (like KCL's concurrency
token, but stored) and nothing else changes. Renewals leave it alone, so a checkpoint in flight
is never fenced out by its own worker's renewals however slow the table, and a retried checkpoint
that had gone through is accepted again; every take replaces it, so a consumer whose lease was
taken can never checkpoint again, even when the lease has come back to the same worker since
(A, then B, then A again).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary.errors import PermanentError

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

    @property
    def finished(self) -> bool:
        """The shard was read to its end and everything landed."""
        return self.checkpoint == Checkpoint.SHARD_END


class LeaseStore(Protocol):
    """Lease persistence with conditional (fenced) updates. Returns None when fenced out."""

    async def list_leases(self) -> list[Lease]:
        """Every lease, strongly consistent."""

    async def get(self, key: str) -> Lease | None:
        """One lease, strongly consistent; None if there is none for `key`."""

    async def create(self, lease: Lease) -> bool:
        """Create `lease` unless one exists for its shard; True if this call created it."""

    async def renew(self, lease: Lease) -> Lease | None:
        """Bump the counter if `lease.owner` still holds it at `lease.counter`; else None."""

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """Become the owner if the counter is still `lease.counter`; else None."""

    async def checkpoint(
        self, lease: Lease, checkpoint: str, landed: Mapping[str, str]
    ) -> Lease | None:
        """Store the checkpoint if `lease.owner` still holds it and nobody took it since
        (`lease.token` unchanged; the counter may have moved: renewals); else None."""

    async def release(self, lease: Lease) -> bool:
        """Give the lease up (owner removed) if still held; True on success."""


class DynamoDbLeaseStore:
    """`LeaseStore` on a DynamoDB table keyed by `leaseKey` (KCL's layout plus `landedThrough`)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def list_leases(self) -> list[Lease]:
        """Scan the table (consistent read, paginated)."""
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
        try:
            while True:
                page = await self._db.scan(**kwargs)
                leases += [_parse(item) for item in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    return sorted(leases, key=lambda lease: lease.key)
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "scan") from exc

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
        """counter + 1, if owner and counter are unchanged."""
        ok = await self._update(
            lease, "SET leaseCounter = :next", {":next": {"N": str(lease.counter + 1)}}, "renew"
        )
        return replace(lease, counter=lease.counter + 1) if ok else None

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """New owner, counter + 1, owner switches + 1 and a new take token, if the counter is
        unchanged; returns the row as stored (a checkpoint may have landed since `lease` was
        read)."""
        try:
            response = await self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=(
                    "SET leaseOwner = :owner, leaseCounter = :next, takeToken = :token, "
                    "ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :one"
                ),
                ConditionExpression="leaseCounter = :counter",
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":token": {"S": new_token()},
                    ":next": {"N": str(lease.counter + 1)},
                    ":counter": {"N": str(lease.counter)},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise _translate(exc, "take") from exc
        except BotoCoreError as exc:
            raise _translate(exc, "take") from exc
        return _parse(response.get("Attributes", {}))

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
        """Remove the owner (others take it at once), counter + 1."""
        return await self._update(
            lease,
            "REMOVE leaseOwner SET leaseCounter = :next",
            {":next": {"N": str(lease.counter + 1)}},
            "release",
        )

    async def _update(
        self, lease: Lease, expression: str, values: dict[str, Any], what: str
    ) -> bool:
        return await self._conditional(
            self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=expression,
                ConditionExpression="leaseCounter = :counter AND leaseOwner = :me",
                ExpressionAttributeValues={
                    **values,
                    ":counter": {"N": str(lease.counter)},
                    ":me": {"S": lease.owner or ""},
                },
            ),
            what,
        )

    async def _conditional(self, call: Any, what: str) -> bool:
        try:
            await call
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise _translate(exc, what) from exc
        except BotoCoreError as exc:
            raise _translate(exc, what) from exc
        return True


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
    return item


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
    )


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
