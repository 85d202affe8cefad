"""The lease table: leases as DynamoDB items, every change a conditional write.

What each write is conditional on (the fences) is in tributary_stream.lease; here is how a
`Lease` is an item and how DynamoDB's refusals become answers (a lost condition is False or
None, anything else is raised through the error tree).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary.clock import Clock, SystemClock
from tributary.errors import PermanentError
from tributary_stream.lease import (
    COORDINATION_PREFIX,
    Checkpoint,
    Lease,
    RewindHold,
    RewindTo,
    Rewound,
    new_token,
)
from tributary_stream.owner_index import OWNER_INDEX, owner_index_error

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


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
