"""Sinks: where the API makes accepted records durable before it answers 202."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import translate_aws_error
from tributary.batch import encode_ndjson_gz
from tributary.envelope import sign_envelope
from tributary.errors import PermanentError, SinkUnavailableError
from tributary.layout import Zone, object_key
from tributary.metrics import Metrics
from tributary.raw_writer import RawObject, RawWriter, WriteOutcome
from tributary.retry import RetryPolicy, Sleep, retry
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


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request's accepted records for one dataset."""

    dataset: str
    batch_id: str  # derived from the request identity: a retry gets the same one
    received: datetime
    records: Sequence[OutRecord]
    digest: str | None = None  # content hash of an idempotent request's records


class Sink(Protocol):
    """Makes accepted records durable."""

    def seal(self, line: bytes) -> bytes:
        """The envelope line as this sink sends it (the Kinesis sink signs it).

        Called once per record as the envelope is built, so a request holds one copy of its
        lines, not an unsigned and a signed one.
        """

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


class KinesisSink:
    """PutRecords in chunks, each envelope signed for the consumer; retries only the entries
    Kinesis did not accept."""

    def __init__(
        self,
        kinesis: KinesisClient,
        stream_name: str,
        metrics: Metrics,
        signing_key: bytes,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._kinesis = kinesis
        self._stream = stream_name
        self._key = signing_key
        self._metrics = metrics
        self._policy = policy or RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=1.0)
        self._sleep = sleep

    def seal(self, line: bytes) -> bytes:
        """`line` signed for the stream consumer (HMAC-SHA256 with the first signing key)."""
        return sign_envelope(line, self._key)

    async def deliver(self, delivery: Delivery) -> None:
        """Every record (sealed: signed) is in the stream when this returns."""
        for chunk in put_records_chunks(delivery.records):
            await self._put_chunk(chunk, delivery.dataset)

    async def _put_chunk(self, chunk: list[OutRecord], dataset: str) -> None:
        pending = chunk

        async def attempt() -> None:
            nonlocal pending
            entries: list[PutRecordsRequestEntryTypeDef] = [
                {"Data": r.line, "PartitionKey": r.partition_key} for r in pending
            ]
            try:
                response = await self._kinesis.put_records(StreamName=self._stream, Records=entries)
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc, f"PutRecords to stream {self._stream}") from exc
            results = response["Records"]
            failed = [
                r for r, result in zip(pending, results, strict=True) if "ErrorCode" in result
            ]
            if failed:
                codes = sorted(
                    {str(result.get("ErrorCode")) for result in results if "ErrorCode" in result}
                )
                self._metrics.add("PutRecordsEntriesRetried", len(failed), dataset=dataset)
                pending = failed
                raise SinkUnavailableError(
                    f"Kinesis did not accept {len(failed)} of {len(entries)} records "
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
        outcome = await self._writer.put(
            RawObject(
                key=key,
                body=encode_ndjson_gz([r.line for r in records]),
                record_count=len(records),
                first=records[0].id,
                last=records[-1].id,
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


def batch_id(*parts: str) -> str:
    """A short stable id from the request identity parts."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _translate(exc: Exception, what: str) -> SinkUnavailableError | PermanentError:
    return translate_aws_error(exc, what, "check STREAM_NAME and the task's IAM permissions")
