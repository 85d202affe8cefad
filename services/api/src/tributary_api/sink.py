"""Sinks: where the API makes accepted records durable before it answers 202."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol, overload

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import translate_aws_error
from tributary.batch import encode_ndjson_gz
from tributary.envelope import sign_envelope
from tributary.errors import PermanentError, SinkUnavailableError
from tributary.layout import Zone, object_key
from tributary.metrics import Metrics
from tributary.raw_writer import RawObject, RawWriter, WriteOutcome
from tributary.retry import RetryPolicy, Sleep, retry
from tributary_api.aggregate import PutEntry, ShardMap, aggregate_by_shard
from tributary_api.idempotency import META_DIGEST, check_same_content

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient
    from types_aiobotocore_kinesis.type_defs import PutRecordsRequestEntryTypeDef

PUT_RECORDS_MAX_RECORDS = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024
WRITER = "api"


class OutRecord(NamedTuple):
    """An accepted record, encoded as its envelope line as the sink sends it (sealed by
    `Sink.seal`; a tuple: built once per record)."""

    id: str
    partition_key: str
    line: bytes


class EnvelopeLines(Sequence[OutRecord]):
    """A request's accepted records built in one call (`ingest`'s whole-body path): every
    envelope line in `ndjson` (one after each), their ids and partition keys.

    The batch contract: only a sink whose `takes_lines` is true gets one (it stores each line
    as built: `MemorySink` counts them, `S3Sink` stores `ndjson` as it is) and it makes no call
    per record; indexing or iterating builds each record's `OutRecord`, once, on first use.
    """

    __slots__ = ("_keys", "_records", "ids", "ndjson")

    def __init__(
        self,
        ndjson: bytes,
        ids: list[str],
        keys: list[str] | Callable[[], list[str]],
    ) -> None:
        self.ndjson = ndjson
        self.ids = ids
        self._keys = keys  # or how to read them, on first use
        self._records: list[OutRecord] | None = None

    @property
    def keys(self) -> list[str]:
        """Each record's partition key."""
        if callable(self._keys):
            self._keys = self._keys()
        return self._keys

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> OutRecord: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[OutRecord]: ...

    def __getitem__(self, index: int | slice) -> OutRecord | Sequence[OutRecord]:
        return self.records()[index]

    def __iter__(self) -> Iterator[OutRecord]:
        return iter(self.records())

    def lines(self) -> list[bytes]:
        """Each envelope line, unsealed, without its newline."""
        return self.ndjson.split(b"\n")[: len(self.ids)]

    def records(self) -> list[OutRecord]:
        """The `OutRecord` of every line (built on first use, then kept)."""
        if self._records is None:
            new = tuple.__new__
            lines = self.lines()
            self._records = [
                new(OutRecord, fields) for fields in zip(self.ids, self.keys, lines, strict=True)
            ]
        return self._records

    def line_bytes(self) -> int:
        """The bytes of every line (the sink stores them as built), newlines not counted."""
        return len(self.ndjson) - len(self.ids)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request's accepted records for one dataset."""

    dataset: str
    batch_id: str  # derived from the request identity: a retry gets the same one
    received: datetime
    records: Sequence[OutRecord]
    digest: str | None = None  # content hash of an idempotent request's records


class Sink(Protocol):
    """Makes accepted records durable.

    `takes_lines`: true for a sink that stores every envelope line as built (its `seal` returns
    the line unchanged); it may get a whole body's lines as one `EnvelopeLines` (no call per
    record unless it reads them one by one). False for a sink that seals: it gets each line
    sealed as the envelope is built, so a request holds one copy of its lines, not an unsealed
    and a sealed one.
    """

    @property
    def takes_lines(self) -> bool:
        """Whether this sink stores the lines as built and takes `EnvelopeLines` whole."""

    def seal(self, line: bytes) -> bytes:
        """The envelope line as this sink sends it (the Kinesis sink signs it)."""

    async def deliver(self, delivery: Delivery) -> None:
        """Return only once every record is durable in the next hop.

        Raises `SinkUnavailableError` when any record may not be durable (the caller must not
        acknowledge it), `PermanentError` when the sink refuses for good (misconfiguration), and
        `IdempotencyConflictError` when a create-only object of this batch exists with other
        content.
        """

    async def ping(self) -> None:
        """Raise unless the sink is reachable (for readiness checks)."""


def put_records_chunks(records: Sequence[OutRecord]) -> Iterator[list[OutRecord]]:
    """Split into PutRecords calls of at most 500 records and 5 MiB (data + partition keys)."""
    chunk: list[OutRecord] = []
    size = 0
    for record in records:
        weight = len(record.line) + len(record.partition_key.encode())
        if chunk and (
            len(chunk) == PUT_RECORDS_MAX_RECORDS or size + weight > PUT_RECORDS_MAX_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += weight
    if chunk:
        yield chunk


def entry_chunks(entries: Sequence[PutEntry]) -> Iterator[list[PutEntry]]:
    """Split into PutRecords calls of at most 500 entries and 5 MiB (data + partition keys)."""
    chunk: list[PutEntry] = []
    size = 0
    for entry in entries:
        weight = entry.weight
        if chunk and (
            len(chunk) == PUT_RECORDS_MAX_RECORDS or size + weight > PUT_RECORDS_MAX_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += weight
    if chunk:
        yield chunk


class KinesisSink:
    """PutRecords in chunks, each envelope signed for the consumer; retries only the entries
    Kinesis did not accept.

    With `aggregate_max_bytes` set, envelopes travel in KPL aggregates (`tributary_api.aggregate`)
    of at most that size, grouped by the shard their partition key maps to (the open shards
    from ListShards, read again after `shard_map_ttl_s`). Each call then carries at most one
    aggregate per shard, the next only once the one before is in the stream, so the records of
    one shard (and of one partition key) keep the request's order through retries.
    """

    def __init__(
        self,
        kinesis: KinesisClient,
        stream_name: str,
        metrics: Metrics,
        signing_key: bytes,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        *,
        aggregate_max_bytes: int | None = None,
        shard_map_ttl_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kinesis = kinesis
        self._stream = stream_name
        self._key = signing_key
        self._metrics = metrics
        self._policy = policy or RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=1.0)
        self._sleep = sleep
        self._aggregate_max = aggregate_max_bytes
        self._shard_ttl = shard_map_ttl_s
        self._monotonic = monotonic
        self._shards: ShardMap | None = None
        self._shards_until = 0.0

    takes_lines = False  # it signs every line

    def seal(self, line: bytes) -> bytes:
        """`line` signed for the stream consumer (HMAC-SHA256 with the first signing key)."""
        return sign_envelope(line, self._key)

    async def deliver(self, delivery: Delivery) -> None:
        """Every record (sealed: signed) is in the stream when this returns."""
        if self._aggregate_max is not None:
            await self._deliver_aggregated(delivery, self._aggregate_max)
            return
        for chunk in put_records_chunks(delivery.records):
            await self._put(
                [{"Data": r.line, "PartitionKey": r.partition_key} for r in chunk],
                delivery.dataset,
            )

    async def _deliver_aggregated(self, delivery: Delivery, max_bytes: int) -> None:
        queues = aggregate_by_shard(delivery.records, await self._shard_map(), max_bytes)
        while queues:  # one aggregate per shard per round: a shard's next waits for this one
            for chunk in entry_chunks([queue[0] for queue in queues]):
                await self._put([_request_entry(e) for e in chunk], delivery.dataset)
            queues = [queue[1:] for queue in queues if len(queue) > 1]

    async def _shard_map(self) -> ShardMap:
        """The open shards' hash key ranges (ListShards), cached for `shard_map_ttl_s`."""
        now = self._monotonic()
        if self._shards is None or now >= self._shards_until:
            self._shards = await self._list_shards()
            self._shards_until = now + self._shard_ttl
        return self._shards

    async def _list_shards(self) -> ShardMap:
        ranges: list[tuple[str, int, int]] = []
        token: str | None = None
        while True:
            try:
                page = await (
                    self._kinesis.list_shards(NextToken=token)
                    if token
                    else self._kinesis.list_shards(StreamName=self._stream)
                )
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc, f"ListShards of stream {self._stream}") from exc
            for shard in page["Shards"]:
                if "EndingSequenceNumber" in shard["SequenceNumberRange"]:
                    continue  # closed by a reshard: no longer written to
                hashes = shard["HashKeyRange"]
                ranges.append(
                    (
                        shard["ShardId"],
                        int(hashes["StartingHashKey"]),
                        int(hashes["EndingHashKey"]),
                    )
                )
            token = page.get("NextToken")
            if not token:
                break
        if not ranges:
            raise SinkUnavailableError(f"stream {self._stream} has no open shard")
        return ShardMap.of(ranges)

    async def _put(self, entries: list[PutRecordsRequestEntryTypeDef], dataset: str) -> None:
        pending = entries

        async def attempt() -> None:
            nonlocal pending
            sent = pending
            try:
                response = await self._kinesis.put_records(StreamName=self._stream, Records=sent)
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc, f"PutRecords to stream {self._stream}") from exc
            results = response["Records"]
            failed = [e for e, result in zip(sent, results, strict=True) if "ErrorCode" in result]
            if failed:
                codes = sorted(
                    {str(result.get("ErrorCode")) for result in results if "ErrorCode" in result}
                )
                self._metrics.add("PutRecordsEntriesRetried", len(failed), dataset=dataset)
                pending = failed
                raise SinkUnavailableError(
                    f"Kinesis did not accept {len(failed)} of {len(sent)} records "
                    f"({', '.join(codes)})"
                )

        await retry(attempt, self._policy, sleep=self._sleep, what="PutRecords")

    async def ping(self) -> None:
        """DescribeStreamSummary: the stream exists and we may see it."""
        try:
            await self._kinesis.describe_stream_summary(StreamName=self._stream)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"describe stream {self._stream}") from exc


class S3Sink:
    """One create-only raw object per request, straight to the lake (no stream)."""

    def __init__(self, writer: RawWriter) -> None:
        self._writer = writer

    takes_lines = True

    def seal(self, line: bytes) -> bytes:
        """Raw lines are stored as built (never signed)."""
        return line

    async def deliver(self, delivery: Delivery) -> None:
        """The object is durable (written now, or by an earlier attempt) when this returns.

        An existing object with another content hash in its metadata is a conflict, not a retry.
        """
        records = delivery.records
        key = object_key(Zone.RAW, delivery.dataset, delivery.received, WRITER, delivery.batch_id)
        digest = delivery.digest
        if isinstance(records, EnvelopeLines):  # lines stored as built: the NDJSON whole
            body = gzip.compress(records.ndjson, 6, mtime=0)  # `encode_ndjson_gz`'s bytes
            first, last = records.ids[0], records.ids[-1]
        else:
            body = encode_ndjson_gz([r.line for r in records])
            first, last = records[0].id, records[-1].id
        outcome = await self._writer.put(
            RawObject(
                key=key,
                body=body,
                record_count=len(records),
                first=first,
                last=last,
                extra_metadata={} if digest is None else {META_DIGEST: digest},
            )
        )
        if outcome is WriteOutcome.ALREADY_EXISTS and digest is not None:
            check_same_content(await self._writer.head(key), digest, delivery.batch_id)

    async def ping(self) -> None:
        """The lake bucket is reachable."""
        await self._writer.ping()


class MemorySink:
    """Keeps deliveries in memory. For tests and benchmarks: not durable, bounded."""

    def __init__(self, keep: int = 256) -> None:
        self.deliveries: list[Delivery] = []
        self.record_count = 0
        self._keep = keep

    takes_lines = True  # a subclass whose seal changes the line sets it False

    def seal(self, line: bytes) -> bytes:
        """Kept as built."""
        return line

    async def deliver(self, delivery: Delivery) -> None:
        """Remember `delivery` (the oldest are forgotten past `keep`)."""
        self.record_count += len(delivery.records)
        if self._keep:
            self.deliveries.append(delivery)
            del self.deliveries[: -self._keep]

    async def ping(self) -> None:
        """Always reachable."""


def _request_entry(entry: PutEntry) -> PutRecordsRequestEntryTypeDef:
    out: PutRecordsRequestEntryTypeDef = {"Data": entry.data, "PartitionKey": entry.partition_key}
    if entry.explicit_hash_key is not None:
        out["ExplicitHashKey"] = entry.explicit_hash_key
    return out


def batch_id(*parts: str) -> str:
    """A short stable id from the request identity parts."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _translate(exc: Exception, what: str) -> SinkUnavailableError | PermanentError:
    return translate_aws_error(exc, what, "check STREAM_NAME and the task's IAM permissions")
