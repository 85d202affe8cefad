"""The ingestion use case, free of HTTP: validate, envelope, deliver, then quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from tributary.batch import encode_ndjson_gz
from tributary.clock import Clock, iso_utc
from tributary.dataset import Dataset
from tributary.envelope import ENVELOPE_VERSION, SIGNATURE_OVERHEAD, derived_id
from tributary.errors import PermanentError
from tributary.layout import Zone, object_key
from tributary.metrics import Metrics, Unit
from tributary.raw_writer import RawObject, RawWriter, WriteOutcome
from tributary_api.idempotency import (
    META_DIGEST,
    RequestLedger,
    check_same_content,
    content_digest,
)
from tributary_api.sink import WRITER, Delivery, OutRecord, Sink, batch_id


@dataclass(frozen=True, slots=True)
class RecordError:
    """Why the record at `index` was rejected: one entry per failing field."""

    index: int
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What happened to each record of one request."""

    accepted: int
    rejected: int
    ids: list[str]
    errors: list[RecordError]


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """One request's records and identity, as the HTTP layer read them."""

    key_name: str
    dataset: Dataset
    records: Sequence[Any]
    request_id: str  # the Idempotency-Key when the producer sent one, else a fresh id
    idempotent: bool  # whether `request_id` is the producer's Idempotency-Key


@dataclass(frozen=True, slots=True)
class _Prepared:
    accepted: list[OutRecord]
    rejected_lines: list[bytes]
    errors: list[RecordError]


class RecordTooLargeError(PermanentError):
    """A record's envelope exceeds the per-record limit; the whole request is refused."""

    def __init__(self, index: int, size: int, limit: int) -> None:
        super().__init__(
            f"record {index} is {size} bytes as an envelope; the limit is {limit} bytes per record"
        )
        self.index = index


class Ingestor:
    """Turns one request's records into durable envelopes, or raises without acknowledging."""

    def __init__(
        self,
        sink: Sink,
        quarantine: RawWriter,
        clock: Clock,
        metrics: Metrics,
        max_record_bytes: int,
    ) -> None:
        self._sink = sink
        self._quarantine = quarantine
        self._ledger = RequestLedger(quarantine)
        self._clock = clock
        self._metrics = metrics
        self._max_record_bytes = max_record_bytes

    async def ingest(self, request: IngestRequest) -> IngestResult:
        """Validate every record; deliver the valid ones, then quarantine the invalid ones.

        Returns only when both are durable. An idempotent request (one with an Idempotency-Key)
        first claims its key, so a retry rebuilds the first attempt's envelopes and object keys.
        Raises, in order of what can happen: `RecordTooLargeError` before writing anything,
        `IdempotencyConflictError` when the key was used with other records (nothing written),
        `SinkUnavailableError` when the sink or the quarantine did not make the data durable,
        `PermanentError` when one of them refuses for good (misconfiguration).
        """
        dataset = request.dataset
        scope = f"{request.key_name}/{dataset.name}"
        batch = batch_id(scope, request.request_id)
        received = _to_millisecond(self._clock.now())
        prepared = self._prepare(request, scope, received)  # refuses oversized records first
        digest = None
        if request.idempotent:
            digest = content_digest(request.records)
            first = await self._ledger.claim(
                dataset.name, batch, request.request_id, digest, received
            )
            if first != received:  # a retry: the first attempt's receive time, its envelopes
                del prepared  # never two requests' worth of envelope lines at once
                received = first
                prepared = self._prepare(request, scope, first)
        if prepared.accepted:
            await self._sink.deliver(
                Delivery(dataset.name, batch, received, prepared.accepted, digest)
            )
        # Only after the sink: a refused request leaves no quarantine object behind.
        if prepared.rejected_lines:
            await self._quarantine_lines(request, batch, received, prepared.rejected_lines, digest)

        accepted, rejected = prepared.accepted, prepared.rejected_lines
        self._metrics.add("RecordsAccepted", len(accepted), dataset=dataset.name)
        self._metrics.add("RecordsRejected", len(rejected), dataset=dataset.name)
        self._metrics.add(
            "BytesAccepted", sum(len(r.line) for r in accepted), Unit.BYTES, dataset=dataset.name
        )
        return IngestResult(
            accepted=len(accepted),
            rejected=len(rejected),
            ids=[r.id for r in accepted],
            errors=prepared.errors,
        )

    def _prepare(self, request: IngestRequest, scope: str, received: datetime) -> _Prepared:
        """Envelope lines for the valid records, quarantine lines and reasons for the others."""
        dataset, request_id = request.dataset, request.request_id
        received_at = iso_utc(received)
        source = f"{WRITER}:{request.key_name}"
        # A signed envelope on the stream is longer by the signature: count it everywhere.
        limit = min(self._max_record_bytes, dataset.max_record_bytes) - SIGNATURE_OVERHEAD
        accepted: list[OutRecord] = []
        rejected_lines: list[bytes] = []
        errors: list[RecordError] = []
        # The loop runs once per record: everything it needs is bound locally.
        is_valid, record_id, partition_key_for = (
            dataset.validator.is_valid,
            dataset.record_id,
            dataset.partition_key_for,
        )
        name, dumps, seal = dataset.name, orjson.dumps, self._sink.seal
        for index, record in enumerate(request.records):
            rid = record_id(record) or derived_id(scope, request_id, index)
            if is_valid(record):
                line = dumps(
                    {
                        "v": ENVELOPE_VERSION,
                        "dataset": name,
                        "id": rid,
                        "source": source,
                        "received_at": received_at,
                        "data": record,
                    }
                )
                partition_key = partition_key_for(record, rid)
                if len(line) + len(partition_key) > limit:  # the key is ASCII (or the id)
                    raise RecordTooLargeError(index, len(line) + len(partition_key), limit)
                accepted.append(OutRecord(rid, partition_key, seal(line)))
                continue
            problems = dataset.validator.errors(record)
            errors.extend(RecordError(index, p.field, p.message) for p in problems)
            line = _quarantine_line(name, rid, source, received_at, index, problems, record)
            if len(line) > limit:
                raise RecordTooLargeError(index, len(line), limit)
            rejected_lines.append(line)
        return _Prepared(accepted, rejected_lines, errors)

    async def _quarantine_lines(
        self,
        request: IngestRequest,
        batch: str,
        received: datetime,
        lines: list[bytes],
        digest: str | None,
    ) -> None:
        """One create-only quarantine object per request, at the same key on every retry."""
        key = object_key(Zone.QUARANTINE, request.dataset.name, received, WRITER, batch)
        outcome = await self._quarantine.put(
            RawObject(
                key=key,
                body=encode_ndjson_gz(lines),
                record_count=len(lines),
                first=request.request_id,
                last=request.request_id,
                extra_metadata={} if digest is None else {META_DIGEST: digest},
            )
        )
        if outcome is WriteOutcome.ALREADY_EXISTS and digest is not None:
            check_same_content(await self._quarantine.head(key), digest, request.request_id)


def _to_millisecond(moment: datetime) -> datetime:
    """`moment` at the precision envelopes carry, so a claim's stored time compares equal."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _quarantine_line(
    dataset: str,
    record_id: str,
    source: str,
    received_at: str,
    index: int,
    problems: Sequence[Any],
    record: Any,
) -> bytes:
    """A quarantine line: the envelope fields, the reasons, and the record as received."""
    return orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "dataset": dataset,
            "id": record_id,
            "source": source,
            "received_at": received_at,
            "index": index,
            "errors": [{"field": p.field, "message": p.message} for p in problems],
            "data": record,
        }
    )
