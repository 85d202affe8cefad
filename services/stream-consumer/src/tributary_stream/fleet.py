"""The fleet row: every worker's heartbeat and load, and the leader lock (KCL 3's worker
metrics and coordinator state, kept in one row of their own table, FLEET_TABLE: not in the
lease table, where consumers of older versions would read the row as a malformed lease).

Each worker writes its beat (a counter it bumps each cycle, its bytes/s, records/s and lease
count) with one UpdateItem that returns the whole row, so one write per cycle tells every
worker who leads and, to the leader, the whole fleet's load: nobody scans for it. The leader
lock is fenced like a lease: `leaderCounter` bumps on each renewal, and a worker that sees it
unchanged for the failover time on its own monotonic clock may claim it, conditionally on the
counter it saw. (A `_fleet` row an earlier build of this left in the lease table is skipped
by lease listings: rows whose key starts with `_` are not leases.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

FLEET_KEY = "fleet"


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """One worker's heartbeat as stored in the fleet row."""

    worker_id: str
    beat: int  # bumped by each heartbeat: liveness is a changing beat, like a lease counter
    bytes_per_s: float = 0.0
    records_per_s: float = 0.0
    leases: int = 0
    avoid: frozenset[str] = frozenset()  # leases this worker gave up (cooling down): not to it
    draining: bool = False  # stopping: alive (its leases are not free), but assign it nothing


@dataclass(frozen=True, slots=True)
class FleetView:
    """The fleet row as read."""

    leader: str | None = None
    leader_counter: int = 0
    workers: Mapping[str, WorkerBeat] = field(default_factory=dict)


class FleetStore(Protocol):
    """Heartbeats and the leader lock."""

    async def beat(self, beat: WorkerBeat) -> FleetView:
        """Store `beat` and return the fleet row as stored after it."""

    async def claim_leader(self, me: str, seen: FleetView) -> bool:
        """Become the leader if the lock is still as in `seen` (free, or the same holder and
        counter); True on success."""

    async def renew_leader(self, me: str, counter: int) -> bool:
        """Bump the lock's counter if `me` still holds it at `counter`."""

    async def resign(self, me: str, counter: int) -> bool:
        """Free the lock (others claim it at once) if still held at `counter`."""

    async def forget(self, me: str, workers: list[str]) -> bool:
        """The leader removes dead workers' beats (if `me` still leads)."""

    async def leave(self, me: str) -> None:
        """A worker stopping removes its own beat (nothing is assigned to it any more)."""


class DynamoDbFleetStore:
    """`FleetStore` on the fleet table's one row (hash key `fleetKey`)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table
        self._initialised = False

    async def beat(self, beat: WorkerBeat) -> FleetView:
        """SET workers.<id> (the map created on first use), returning the row."""
        if not self._initialised:  # a nested path needs its map: create it if missing
            await self._call(
                "SET workers = if_not_exists(workers, :empty)", {":empty": {"M": {}}}, None
            )
            self._initialised = True
        attributes = await self._call(
            "SET workers.#w = :beat",
            {":beat": {"M": _beat_item(beat)}},
            None,
            names={"#w": beat.worker_id},
            returns=True,
        )
        return _view(attributes or {})

    async def claim_leader(self, me: str, seen: FleetView) -> bool:
        """SET leaderId, leaderCounter + 1 if lock unchanged since `seen`."""
        if seen.leader is None:  # free: and the counter as seen, so it never goes back
            condition = "attribute_not_exists(leaderId) AND " + (
                "attribute_not_exists(leaderCounter)"
                if seen.leader_counter == 0
                else "leaderCounter = :counter"
            )
            values: dict[str, Any] = (
                {":counter": {"N": str(seen.leader_counter)}} if seen.leader_counter else {}
            )
        else:
            condition = "leaderId = :held AND leaderCounter = :counter"
            values = {":held": {"S": seen.leader}, ":counter": {"N": str(seen.leader_counter)}}
        return await self._conditional(
            "SET leaderId = :me, leaderCounter = :next",
            {**values, ":me": {"S": me}, ":next": {"N": str(seen.leader_counter + 1)}},
            condition,
        )

    async def renew_leader(self, me: str, counter: int) -> bool:
        """leaderCounter + 1, if held at `counter`."""
        return await self._conditional(
            "SET leaderCounter = :next",
            {":me": {"S": me}, ":counter": {"N": str(counter)}, ":next": {"N": str(counter + 1)}},
            "leaderId = :me AND leaderCounter = :counter",
        )

    async def resign(self, me: str, counter: int) -> bool:
        """REMOVE leaderId, if held at `counter` (the counter stays: a claim conditions on
        the lock being free)."""
        return await self._conditional(
            "REMOVE leaderId",
            {":me": {"S": me}, ":counter": {"N": str(counter)}},
            "leaderId = :me AND leaderCounter = :counter",
        )

    async def forget(self, me: str, workers: list[str]) -> bool:
        """REMOVE workers.<id> for each, if `me` leads."""
        if not workers:
            return True
        names = {f"#w{i}": w for i, w in enumerate(workers)}
        return await self._conditional(
            "REMOVE " + ", ".join(f"workers.{n}" for n in names),
            {":me": {"S": me}},
            "leaderId = :me",
            names=names,
        )

    async def leave(self, me: str) -> None:
        """REMOVE workers.<me>."""
        if self._initialised:
            await self._call("REMOVE workers.#w", {}, None, names={"#w": me})

    async def _conditional(
        self,
        expression: str,
        values: dict[str, Any],
        condition: str,
        names: dict[str, str] | None = None,
    ) -> bool:
        try:
            await self._call(expression, values, condition, names=names)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise _translate(exc) from exc
        return True

    async def _call(
        self,
        expression: str,
        values: dict[str, Any],
        condition: str | None,
        *,
        names: dict[str, str] | None = None,
        returns: bool = False,
    ) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"fleetKey": {"S": FLEET_KEY}},
            "UpdateExpression": expression,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        if condition:
            kwargs["ConditionExpression"] = condition
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if returns:
            kwargs["ReturnValues"] = "ALL_NEW"
        try:
            response = await self._db.update_item(**kwargs)
        except ClientError as exc:
            if condition and error_code(exc) == "ConditionalCheckFailedException":
                raise
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc
        attributes: dict[str, Any] = dict(response.get("Attributes", {}))
        return attributes


def _beat_item(beat: WorkerBeat) -> dict[str, Any]:
    item: dict[str, Any] = {
        "beat": {"N": str(beat.beat)},
        "bps": {"N": f"{beat.bytes_per_s:.6g}"},
        "rps": {"N": f"{beat.records_per_s:.6g}"},
        "leases": {"N": str(beat.leases)},
    }
    if beat.avoid:  # DynamoDB sets cannot be empty
        item["avoid"] = {"SS": sorted(beat.avoid)}
    if beat.draining:
        item["draining"] = {"BOOL": True}
    return item


def _view(item: Mapping[str, Any]) -> FleetView:
    workers = {}
    for worker_id, value in item.get("workers", {}).get("M", {}).items():
        beat = value.get("M", {})
        workers[worker_id] = WorkerBeat(
            worker_id,
            int(beat.get("beat", {}).get("N", "0")),
            float(beat.get("bps", {}).get("N", "0")),
            float(beat.get("rps", {}).get("N", "0")),
            int(beat.get("leases", {}).get("N", "0")),
            frozenset(beat.get("avoid", {}).get("SS", [])),
            bool(beat.get("draining", {}).get("BOOL", False)),
        )
    return FleetView(
        item.get("leaderId", {}).get("S"),
        int(item.get("leaderCounter", {}).get("N", "0")),
        workers,
    )


def _translate(exc: Exception) -> Exception:
    return translate_aws_error(exc, "fleet table", "check FLEET_TABLE and IAM")
