"""The ingestion use case, free of HTTP: validate, envelope, quarantine, deliver."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tributary.batch import encode_ndjson_gz
from tributary.clock import Clock, iso_utc
from tributary.dataset import Dataset
from tributary.envelope import ENVELOPE_VERSION, derived_id
from tributary.errors import PermanentError
from tributary.layout import Zone, object_key
from tributary.metrics import Metrics, Unit
from tributary.raw_writer import RawObject, RawWriter
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
        self._clock = clock
        self._metrics = metrics
        self._max_record_bytes = max_record_bytes

    async def ingest(
        self, key_name: str, dataset: Dataset, records: Sequence[Any], request_id: str
    ) -> IngestResult:
        """Validate every record; quarantine the invalid ones, deliver the valid ones.

        Returns only when both are durable. `request_id` is the producer's Idempotency-Key when
        it sent one, so a retry derives the same record ids and object keys. Raises
        `RecordTooLargeError` before writing anything, `SinkUnavailableError` when the sink or
        the quarantine did not make the data durable.
        """
        received = self._clock.now()
        received_at = iso_utc(received)
        source = f"{WRITER}:{key_name}"
        scope = f"{key_name}/{dataset.name}"
        limit = min(self._max_record_bytes, dataset.max_record_bytes)
        accepted: list[OutRecord] = []
        rejected_lines: list[bytes] = []
        errors: list[RecordError] = []
        # The loop runs once per record: everything it needs is bound locally.
        is_valid, record_id, partition_key_for = (
            dataset.validator.is_valid,
            dataset.record_id,
            dataset.partition_key_for,
        )
        name, dumps = dataset.name, orjson.dumps
        for index, record in enumerate(records):
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
                accepted.append(OutRecord(rid, partition_key, line))
                continue
            problems = dataset.validator.errors(record)
            errors.extend(RecordError(index, p.field, p.message) for p in problems)
            line = _quarantine_line(name, rid, source, received_at, index, problems, record)
            if len(line) > limit:
                raise RecordTooLargeError(index, len(line), limit)
            rejected_lines.append(line)

        batch = batch_id(scope, request_id)
        if rejected_lines:
            await self._quarantine.put(
                RawObject(
                    key=object_key(Zone.QUARANTINE, dataset.name, received, WRITER, batch),
                    body=encode_ndjson_gz(rejected_lines),
                    record_count=len(rejected_lines),
                    first=request_id,
                    last=request_id,
                )
            )
        if accepted:
            await self._sink.deliver(Delivery(dataset.name, batch, received, accepted))

        self._metrics.add("RecordsAccepted", len(accepted), dataset=dataset.name)
        self._metrics.add("RecordsRejected", len(rejected_lines), dataset=dataset.name)
        self._metrics.add(
            "BytesAccepted", sum(len(r.line) for r in accepted), Unit.BYTES, dataset=dataset.name
        )
        return IngestResult(
            accepted=len(accepted),
            rejected=len(rejected_lines),
            ids=[r.id for r in accepted],
            errors=errors,
        )


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
