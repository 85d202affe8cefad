"""The ingestion use case, free of HTTP: validate, envelope, deliver, then quarantine."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import add
from typing import Any, cast

import msgspec
import orjson

from tributary.batch import encode_ndjson_gz
from tributary.clock import Clock, iso_utc
from tributary.dataset import Dataset
from tributary.envelope import ENVELOPE_VERSION, SIGNATURE_OVERHEAD, derived_id
from tributary.errors import PermanentError
from tributary.layout import Zone, object_key
from tributary.metrics import Metrics, Unit
from tributary.raw_writer import RawObject, RawWriter, WriteOutcome
from tributary_api.fastpath import Entry, FastBatch
from tributary_api.idempotency import (
    META_DIGEST,
    RequestLedger,
    check_same_content,
    content_digest,
)
from tributary_api.sink import WRITER, Delivery, EnvelopeLines, OutRecord, Sink, batch_id


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
    # Each record's text and verdict so far, or a body the fast path took whole (fastpath).
    records: Sequence[Entry] | FastBatch
    request_id: str  # the Idempotency-Key when the producer sent one, else a fresh id
    idempotent: bool  # whether `request_id` is the producer's Idempotency-Key


@dataclass(frozen=True, slots=True)
class _Prepared:
    accepted: list[OutRecord] | EnvelopeLines
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
            digest = content_digest(_parsed(request.records))
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
        if isinstance(accepted, EnvelopeLines):
            ids, size = accepted.ids, accepted.line_bytes()
        else:
            ids, size = [r.id for r in accepted], sum(len(r.line) for r in accepted)
        self._metrics.add("RecordsAccepted", len(accepted), dataset=dataset.name)
        self._metrics.add("RecordsRejected", len(rejected), dataset=dataset.name)
        self._metrics.add("BytesAccepted", size, Unit.BYTES, dataset=dataset.name)
        return IngestResult(
            accepted=len(accepted), rejected=len(rejected), ids=ids, errors=prepared.errors
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
        is_valid, partition_key_for = dataset.validator.is_valid, dataset.partition_key_for
        name, dumps, seal = dataset.name, orjson.dumps, self._sink.seal
        head, middle = _envelope_parts(name, source, received_at)
        if isinstance(request.records, FastBatch):
            made = _FastEnvelopes(request.records, name, source, received_at, limit)
            rids, envelopes = made.ids(scope, request_id), made.envelopes
            if self._sink.takes_lines:
                return _Prepared(made.lines(rids, envelopes(rids)), [], [])
            return _Prepared(made.sealed(rids, envelopes(rids), seal), [], [])
        for index, (text, ids, record) in enumerate(request.records):
            if ids is None and not is_valid(record):
                rid = envelope_id(dataset, record, scope, request_id, index)
                problems = dataset.validator.errors(record)
                errors.extend(RecordError(index, p.field, p.message) for p in problems)
                line = _quarantine_line(name, rid, source, received_at, index, problems, record)
                if len(line) > limit:
                    raise RecordTooLargeError(index, len(line), limit)
                rejected_lines.append(line)
                continue
            fields = record if ids is None else ids
            rid = envelope_id(dataset, fields, scope, request_id, index)
            # `data` is the record's own text where the body was split into texts (the same
            # JSON value, compact: `fastpath.compact`), else the parsed record encoded.
            data = dumps(record) if text is None else text
            line = b"".join((head, dumps(rid), middle, data, b"}"))
            partition_key = partition_key_for(fields, rid)
            if len(line) + len(partition_key) > limit:  # the key is ASCII (or the id)
                raise RecordTooLargeError(index, len(line) + len(partition_key), limit)
            accepted.append(OutRecord(rid, partition_key, seal(line)))
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


def envelope_id(dataset: Dataset, fields: Any, scope: str, request_id: str, index: int) -> str:
    """The envelope id of the record at `index`: `Dataset.envelope_id` (the producer's id, as
    `<id>@<version>` for a dataset with a `version_field`), else derived from the request.
    `fields` is the parsed record or the fast path's identity fields
    (`fastpath.identity_fields`)."""
    return dataset.envelope_id(fields) or derived_id(scope, request_id, index)


class _Envelope(msgspec.Struct, gc=False):
    """`encode_envelope`'s layout, members in its order, `data` the record's own text."""

    v: int
    dataset: str
    id: str
    source: str
    received_at: str
    data: msgspec.Raw


_encode_lines = msgspec.json.Encoder().encode_lines
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class _FastEnvelopes:
    """The envelopes of a body the fast path took whole (every record valid, its text as
    `data`), with their ids and partition keys: as one NDJSON built in one C call (`lines`, a
    sink that takes lines) or each line sealed as it is made (`sealed`).

    The ids are `envelope_id`'s: the producer's (read by the fast path) or derived; a record
    without a usable partition key field is keyed by its id (`Dataset.partition_key_for`).
    Both raise `RecordTooLargeError` for the first record whose line and key exceed `limit`.
    """

    batch: FastBatch
    name: str
    source: str
    received_at: str
    limit: int

    def ids(self, scope: str, request_id: str) -> list[str]:
        """Each record's envelope id."""
        ids = self.batch.ids
        if None in ids:
            ids = [derived_id(scope, request_id, i) if r is None else r for i, r in enumerate(ids)]
        return cast("list[str]", ids)

    def keys(self, rids: list[str]) -> list[str]:
        """Each record's partition key (its id where the field gives none)."""
        texts = self.batch.keys()
        if None in texts:
            return [rid[:256] if k is None else k for k, rid in zip(texts, rids, strict=True)]
        return cast("list[str]", texts)

    def envelopes(self, rids: list[str]) -> Iterator[_Envelope]:
        """Each record's envelope, made as it is read."""
        return map(
            _Envelope,
            repeat(ENVELOPE_VERSION),
            repeat(self.name),
            rids,
            repeat(self.source),
            repeat(self.received_at),
            self.batch.texts,
        )

    def sealed(
        self, rids: list[str], envelopes: Iterator[_Envelope], seal: Callable[[bytes], bytes]
    ) -> list[OutRecord]:
        """Each line sealed as it is made, so the request holds one copy of its lines, as the
        record-by-record path does."""
        out: list[OutRecord] = []
        append, encode, new, limit = out.append, _encode, tuple.__new__, self.limit
        for index, (rid, key, envelope) in enumerate(
            zip(rids, self.keys(rids), envelopes, strict=True)
        ):
            line = encode(envelope)
            if len(line) + len(key) > limit:  # the key is ASCII (or the id)
                raise RecordTooLargeError(index, len(line) + len(key), limit)
            append(new(OutRecord, (rid, key, seal(line))))
        return out

    def lines(self, rids: list[str], envelopes: Iterator[_Envelope]) -> EnvelopeLines:
        """Every line in one NDJSON, the keys read when the sink asks for them; the size
        checked on the whole first (no line is longer than all of them)."""
        lines = EnvelopeLines(_encode_lines(list(envelopes)), rids, lambda: self.keys(rids))
        key_chars = self.batch.key_chars
        if key_chars is None:
            key_chars = max(map(len, lines.keys))
        if len(lines.ndjson) + key_chars > self.limit:  # the keys are ASCII (or the ids)
            sizes = list(map(add, map(len, lines.lines()), map(len, lines.keys)))
            if max(sizes) > self.limit:
                index = next(i for i, size in enumerate(sizes) if size > self.limit)
                raise RecordTooLargeError(index, sizes[index], self.limit)
        return lines


def _parsed(records: Sequence[Entry] | FastBatch) -> Iterator[Any]:
    """The records as orjson parses them (the idempotency digest is over parsed values, so a
    retry in another layout is the same request); one at a time, never all at once."""
    loads = orjson.loads
    if isinstance(records, FastBatch):
        yield from (loads(memoryview(text)) for text in records.texts)  # Raw is a buffer
        return
    for text, ids, value in records:
        yield value if ids is None or text is None else loads(text)


def _envelope_parts(dataset: str, source: str, received_at: str) -> tuple[bytes, bytes]:
    """The bytes before the id and between the id and `data`: `encode_envelope`'s layout."""
    head = b'{"v":%d,"dataset":%s,"id":' % (ENVELOPE_VERSION, orjson.dumps(dataset))
    middle = b',"source":%s,"received_at":%s,"data":' % (
        orjson.dumps(source),
        orjson.dumps(received_at),
    )
    return head, middle


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
