"""Reading the three quarantine line formats and checking each line against the current registry.

- the API's (`api-…` objects): the envelope fields, `errors`, and `data` as received;
- the stream consumer's (`<shard>-…`): `data_base64`, the Kinesis record as read, with its
  `partition_key`, `id` (`<shard>-<sequence>[.<sub>]`) and `received_at` (its arrival); lines of
  `<shard>.refused-…` chains carry a raw envelope line raw refused for good; lines of
  `<shard>.processing-…` chains are records already in raw that a processor failed on (their
  redrive is a rewind, not this);
- curate's (`curate-…`): `stage: curate`, `raw_key` and `line`, the raw envelope line.

A line is recovered when the record it holds is now a valid envelope of the dataset under the
current registry; the envelope keeps its original id and received time.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from tributary.dataset import Dataset, DatasetRegistry
from tributary.envelope import BadEnvelopeError, Envelope, encode_envelope
from tributary.layout import Zone
from tributary_stream.route import Router
from tributary_stream.stream import Record


class Origin(StrEnum):
    """Which writer quarantined a line (from the object's name and the line's fields)."""

    API = "api"
    CONSUMER = "consumer"
    REFUSED = "consumer (raw refused)"
    PROCESSING = "consumer (processing)"
    CURATE = "curate"
    UNKNOWN = "unknown"


def origin_of(object_name: str, doc: dict[str, Any]) -> Origin:
    """The writer of a quarantine line, by its object's name (`<writer>-<batch>`)."""
    if doc.get("stage") == "curate" or object_name.startswith("curate-"):
        return Origin.CURATE
    if object_name.startswith("api-"):
        return Origin.API
    if object_name.startswith("shardId-"):
        writer = object_name.rpartition("-")[0]
        if writer.endswith(".processing"):
            return Origin.PROCESSING
        if writer.endswith(".refused"):
            return Origin.REFUSED
        return Origin.CONSUMER
    return Origin.UNKNOWN


def reason_of(doc: dict[str, Any]) -> str:
    """The line's first reason, as `field: message` (what the reasons table counts)."""
    errors = doc.get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return "(no reason given)"
    first = errors[0]
    field, message = str(first.get("field") or ""), str(first.get("message") or "")
    return f"{field}: {message}" if field else message


def reasons_text(doc: dict[str, Any]) -> str:
    """Every reason of the line, lower case (what `--reason` matches)."""
    errors = doc.get("errors")
    if not isinstance(errors, list):
        return ""
    return " | ".join(
        f"{e.get('field', '')}: {e.get('message', '')}".lower()
        for e in errors
        if isinstance(e, dict)
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the current registry says about one quarantined line."""

    envelope: bytes | None  # the raw line to write when recovered
    dataset: str | None  # the dataset the record belongs to now
    why: str  # why it stays (empty when recovered)


class Rechecker:
    """Checks quarantined lines against `registry` (and, for stream records, the consumer's
    routing with `router`, built from the same registry)."""

    def __init__(self, registry: DatasetRegistry, router: Router) -> None:
        self._registry = registry
        self._router = router

    def dataset(self, name: str) -> Dataset | None:
        """The registered dataset of that name, if any."""
        return self._registry.get(name, None)

    def digest(self, dataset: str) -> str:
        """What a dataset's checks are, as a digest: schema, curated mapping, id and partition
        (a redrive stamps it on what it writes: see `Redriver`)."""
        if dataset not in self._registry:
            return ""
        d = self._registry[dataset]
        text = repr((d.schema, d.curated, d.id_field, d.partition_key, d.max_record_bytes))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def check(self, origin: Origin, doc: dict[str, Any]) -> Verdict:
        """The verdict for one parsed quarantine line of `origin`."""
        if origin is Origin.API:
            return self._valid(
                doc.get("dataset"),
                doc.get("id"),
                doc.get("source"),
                doc.get("received_at"),
                doc.get("data"),
            )
        if origin is Origin.CURATE:
            return self._envelope_line(doc.get("line"))
        if origin is Origin.REFUSED:
            return self._envelope_line(_decoded(doc))
        if origin is Origin.CONSUMER:
            return self._routed(doc)
        if origin is Origin.PROCESSING:
            return Verdict(None, None, "already in raw (a processor failed on it): rewind instead")
        return Verdict(None, None, "not a quarantine line this command knows")

    def _valid(
        self, dataset: object, record_id: object, source: object, received: object, data: object
    ) -> Verdict:
        if not isinstance(dataset, str) or dataset not in self._registry:
            return Verdict(None, None, f"unknown dataset {dataset!r}")
        fields = {"id": record_id, "source": source, "received_at": received}
        texts = {name: value for name, value in fields.items() if isinstance(value, str) and value}
        missing = [name for name in fields if name not in texts]
        if missing:
            return Verdict(None, dataset, f"no {missing[0]} in the quarantine line")
        validator = self._registry[dataset].validator
        if not validator.is_valid(data):
            problems = validator.errors(data)
            first = problems[0] if problems else None
            why = f"{first.field}: {first.message}" if first else "invalid"
            return Verdict(None, dataset, f"still invalid: {why}")
        line = encode_envelope(dataset, texts["id"], texts["source"], texts["received_at"], data)
        return Verdict(line, dataset, "")

    def _envelope_line(self, line: object) -> Verdict:
        if isinstance(line, str):
            line = line.encode()
        if not isinstance(line, bytes):
            return Verdict(None, None, "no raw line in the quarantine line")
        try:
            envelope = Envelope.from_json(line)
        except BadEnvelopeError as exc:
            return Verdict(None, None, f"still not an envelope: {exc}")
        verdict = self._valid(
            envelope.dataset, envelope.id, envelope.source, envelope.received_at, envelope.data
        )
        # The raw line as it was (with the consumer's arrived_at, if any), not re-encoded.
        return Verdict(line if verdict.envelope else None, verdict.dataset, verdict.why)

    def _routed(self, doc: dict[str, Any]) -> Verdict:
        record_id, received, data = doc.get("id"), doc.get("received_at"), _decoded(doc)
        if not isinstance(record_id, str) or not isinstance(received, str) or data is None:
            return Verdict(None, None, "not a stream quarantine line (id, received_at, data)")
        shard, _, position = record_id.rpartition("-")
        sequence, _, sub = position.partition(".")
        if not shard or not sequence.isdigit():
            return Verdict(None, None, f"record id {record_id!r} is not <shard>-<sequence>")
        try:
            arrival, bad = datetime.fromisoformat(received), False
        except ValueError:  # routed all the same, to tell whose record stays
            arrival, bad = datetime(1970, 1, 1, tzinfo=UTC), True
        record = Record(
            sequence,
            int(sub) if sub.isdigit() else 0,
            str(doc.get("partition_key") or ""),
            data,
            arrival,
        )
        target, line = self._router.route(shard, record)
        if target.zone is not Zone.RAW:
            return Verdict(
                None, None, f"still refused by the consumer: {reason_of(orjson.loads(line))}"
            )
        verdict = self._envelope_line(line)
        if bad:
            why = f"bad received_at {received[:40]!r} in the quarantine line"
            return Verdict(None, verdict.dataset, why)
        return verdict


def _decoded(doc: dict[str, Any]) -> bytes | None:
    value = doc.get("data_base64")
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None
