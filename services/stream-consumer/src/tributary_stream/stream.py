"""Reading Kinesis: shards, iterators and pages of records, behind a small interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary.errors import PermanentError, TransientError
from tributary_stream.aggregation import MAGIC, deaggregate
from tributary_stream.lease import Checkpoint

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

# The least time between GetRecords calls on a shard: Kinesis allows 5 a second per shard.
MIN_POLL_GAP_S = 0.2


@dataclass(frozen=True, slots=True)
class Shard:
    """A shard as ListShards describes it."""

    shard_id: str
    parents: frozenset[str]
    ending_sequence: str | None  # set once the shard is closed (split or merged)


@dataclass(frozen=True, slots=True)
class Record:
    """One user record (deaggregated): `sub` > 0 only inside a KPL aggregate."""

    sequence: str
    sub: int
    partition_key: str
    data: bytes
    arrival: datetime
    error: str | None = None  # a damaged KPL aggregate: `data` is the whole Kinesis record


@dataclass(frozen=True, slots=True)
class Page:
    """One GetRecords answer. `next_iterator` None (or `children` set) means the shard ended."""

    records: Sequence[Record]
    next_iterator: str | None
    millis_behind: int
    children: frozenset[str] | None
    # Kinesis records in the answer, what GetRecords' Limit counts (a KPL aggregate is one
    # however many user records it holds, an empty one none in `records`).
    kinesis_records: int
    # Sequence numbers of KPL aggregates that held no user record (nothing to land).
    empty_aggregates: tuple[str, ...] = ()


def user_records(sequence: str, partition_key: str, data: bytes, arrival: datetime) -> list[Record]:
    """The user records of one Kinesis record (deaggregated; a damaged aggregate carries its
    reason; an empty aggregate gives none)."""
    if not data.startswith(MAGIC):  # the usual case: not a KPL aggregate
        return [Record(sequence, 0, partition_key, data, arrival)]
    parts = deaggregate(data, partition_key)
    return [
        Record(sequence, sub, key, payload, arrival, parts.error)
        for sub, (key, payload) in enumerate(parts.records)
    ]


class ThrottledError(TransientError):
    """The shard's read limit was exceeded; back off and retry."""


class IteratorExpiredError(TransientError):
    """The shard iterator expired (5 minutes); get a new one from the last position."""


class MalformedResponseError(PermanentError):
    """Kinesis (or whatever answers at its endpoint) sent a response we cannot read."""


class StreamReader(Protocol):
    """The Kinesis calls a shard consumer needs."""

    async def list_shards(self) -> list[Shard]:
        """Every shard of the stream (all pages)."""

    async def iterator(self, shard_id: str, position: str, timestamp: datetime | None) -> str:
        """An iterator after sequence number `position`, or at a `Checkpoint` sentinel."""

    async def get_records(self, iterator: str, limit: int) -> Page:
        """The next page. Raises `ThrottledError` or `IteratorExpiredError` (both transient)."""


class KinesisStreamReader:
    """`StreamReader` on a real (or emulated) Kinesis stream."""

    def __init__(self, kinesis: KinesisClient, stream: str) -> None:
        self._kinesis = kinesis
        self._stream = stream

    async def list_shards(self) -> list[Shard]:
        """ListShards, following NextToken."""
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamName": self._stream}
        try:
            while True:
                page = await self._kinesis.list_shards(**kwargs)
                for s in page["Shards"]:
                    parents = {
                        p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p
                    }
                    ending = s.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                    shards.append(Shard(s["ShardId"], frozenset(parents), ending))
                token = page.get("NextToken")
                if not token:
                    return shards
                kwargs = {"NextToken": token}
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "ListShards") from exc
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedResponseError(
                f"ListShards answered an unreadable page ({exc!r})"
            ) from exc

    async def iterator(self, shard_id: str, position: str, timestamp: datetime | None) -> str:
        """GetShardIterator for a checkpoint."""
        kwargs: dict[str, Any] = {"StreamName": self._stream, "ShardId": shard_id}
        if position in (Checkpoint.TRIM_HORIZON, Checkpoint.LATEST):
            kwargs["ShardIteratorType"] = position
        elif position == Checkpoint.AT_TIMESTAMP:
            kwargs["ShardIteratorType"] = "AT_TIMESTAMP"
            kwargs["Timestamp"] = timestamp
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["StartingSequenceNumber"] = position
        try:
            response = await self._kinesis.get_shard_iterator(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"GetShardIterator {shard_id}") from exc
        return response["ShardIterator"]

    async def get_records(self, iterator: str, limit: int) -> Page:
        """GetRecords, deaggregating KPL records."""
        try:
            response = await self._kinesis.get_records(ShardIterator=iterator, Limit=limit)
        except ClientError as exc:
            code = error_code(exc)
            if code in ("ProvisionedThroughputExceededException", "LimitExceededException"):
                raise ThrottledError(f"GetRecords throttled ({code})") from exc
            if code == "ExpiredIteratorException":
                raise IteratorExpiredError("shard iterator expired") from exc
            raise _translate(exc, "GetRecords") from exc
        except BotoCoreError as exc:
            raise _translate(exc, "GetRecords") from exc
        try:
            records: list[Record] = []
            empty: list[str] = []
            for r in response["Records"]:
                parts = user_records(
                    r["SequenceNumber"],
                    r["PartitionKey"],
                    r["Data"],
                    r["ApproximateArrivalTimestamp"],
                )
                records += parts
                if not parts:
                    empty.append(r["SequenceNumber"])
            children = response.get("ChildShards")
            return Page(
                records,
                response.get("NextShardIterator"),
                int(response.get("MillisBehindLatest", 0)),
                frozenset(c["ShardId"] for c in children) if children else None,
                len(response["Records"]),
                tuple(empty),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponseError(
                f"GetRecords answered something that is not a GetRecords response ({exc!r})"
            ) from exc


def _translate(exc: Exception, what: str) -> Exception:
    return translate_aws_error(exc, what, "check STREAM_NAME and IAM permissions")
