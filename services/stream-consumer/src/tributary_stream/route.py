"""From a stream record to the raw line it becomes, or to quarantine with the reason.

Envelopes are trusted only from the API: it signs each one (HMAC-SHA256 with the key both share,
`ENVELOPE_SIGNING_KEY`), and only a record whose signature verifies keeps its `id`, `source` and
`received_at` (the API's receive time), and gains `arrived_at`, the arrival time the consumer
saw. Anything else that looks like an envelope is a bare record (or, by setting, goes to
quarantine), so a direct Kinesis producer cannot claim another record's id or a receive time:
every line the consumer writes carries the arrival time Kinesis gave the record.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import orjson

from tributary.clock import iso_utc
from tributary.dataset import DatasetRegistry
from tributary.envelope import ENVELOPE_VERSION, encode_envelope, verify_envelope_any
from tributary.layout import Zone
from tributary_stream.stream import Record

UNROUTED = "unrouted"  # quarantine dataset for records that name no known dataset


class UnsignedEnvelopes(StrEnum):
    """What to do with a record that looks like an envelope but is not signed by the API."""

    BARE = "bare"  # treat it as a bare record: wrapped, the consumer's id and arrival time
    QUARANTINE = "quarantine"  # refuse it: quarantine with the reason


@dataclass(frozen=True, slots=True)
class Target:
    """Where a line goes: a zone and a dataset (one object chain each)."""

    zone: Zone
    dataset: str

    @property
    def name(self) -> str:
        """`raw/posts`: the key of this chain's entry in a lease's landed map."""
        return f"{self.zone}/{self.dataset}"


class Router:
    """Turns records into envelope lines: signed API envelopes pass through (without their
    signature); everything else is wrapped as a bare record.

    `signing_key` None (or no key) trusts no envelope at all.
    """

    def __init__(
        self,
        registry: DatasetRegistry,
        source: str,
        default_dataset: str | None = None,
        dataset_field: str | None = None,
        *,
        signing_key: bytes | Sequence[bytes] | None = None,
        unsigned: UnsignedEnvelopes = UnsignedEnvelopes.BARE,
    ) -> None:
        self._registry = registry
        self._source = source
        self._default = default_dataset
        self._field = dataset_field
        # One key, or several during a rotation: an envelope signed with any of them is trusted.
        self._keys: tuple[bytes, ...] = (
            ()
            if signing_key is None
            else (signing_key,)
            if isinstance(signing_key, bytes)
            else tuple(signing_key)
        )
        self._unsigned = unsigned

    def route(self, shard_id: str, record: Record) -> tuple[Target, bytes]:
        """The target and line for `record`; poison goes to quarantine, never raises."""
        record_id = f"{shard_id}-{record.sequence}" + (f".{record.sub}" if record.sub else "")
        try:
            obj = orjson.loads(record.data)
        except orjson.JSONDecodeError as exc:
            return self._poison(record, record_id, self._default, f"not JSON: {exc.msg}")
        forged = False
        if isinstance(obj, dict) and obj.get("v") == ENVELOPE_VERSION and "data" in obj:
            line = verify_envelope_any(record.data, self._keys)
            if line is not None:
                return self._envelope(record, record_id, obj, line)
            if self._unsigned is UnsignedEnvelopes.QUARANTINE:
                named = obj.get("dataset")
                return self._poison(
                    record,
                    record_id,
                    named if isinstance(named, str) else None,
                    "envelope not signed by the API (ENVELOPE_SIGNING_KEY); "
                    "send bare records, or envelopes through the API",
                )
            forged = True
        dataset = self._default
        if self._field is not None and isinstance(obj, dict):
            named = obj.get(self._field)
            dataset = named if isinstance(named, str) else dataset
        if dataset is None:
            return self._poison(
                record,
                record_id,
                None,
                "no dataset: not an envelope and no default dataset configured",
            )
        if dataset not in self._registry:
            return self._poison(record, record_id, None, f"unknown dataset {dataset!r}")
        # An unsigned envelope's `id` is the sender's claim to an envelope id, not a field of a
        # record: honouring it would let a direct producer suppress that record at dedupe.
        own_id = None if forged else self._registry[dataset].record_id(obj)
        line = encode_envelope(
            dataset, own_id or record_id, self._source, iso_utc(record.arrival), obj
        )
        return Target(Zone.RAW, dataset), line

    def reject(self, shard_id: str, record: Record, reason: str) -> tuple[Target, bytes]:
        """Quarantine `record` with `reason` (one the consumer cannot use, e.g. a damaged
        KPL aggregate), like poison found by `route`."""
        record_id = f"{shard_id}-{record.sequence}" + (f".{record.sub}" if record.sub else "")
        return self._poison(record, record_id, self._default, reason)

    def _envelope(
        self, record: Record, record_id: str, obj: dict[str, object], line: bytes
    ) -> tuple[Target, bytes]:
        dataset = obj.get("dataset")
        if not isinstance(dataset, str) or dataset not in self._registry:
            return self._poison(
                record, record_id, None, f"envelope names unknown dataset {dataset!r}"
            )
        for name in ("id", "source", "received_at"):
            if not isinstance(obj.get(name), str) or not obj[name]:
                return self._poison(
                    record, record_id, dataset, f"bad envelope: {name!r} must be a non-empty string"
                )
        # The API encodes it compact (one line, `}` last); the consumer adds when it saw it.
        arrived = b',"arrived_at":"' + iso_utc(record.arrival).encode() + b'"}'
        return Target(Zone.RAW, dataset), line[:-1] + arrived

    def _poison(
        self, record: Record, record_id: str, dataset: str | None, reason: str
    ) -> tuple[Target, bytes]:
        dataset = dataset if dataset in self._registry else UNROUTED
        line = orjson.dumps(
            {
                "v": ENVELOPE_VERSION,
                "dataset": dataset,
                "id": record_id,
                "source": self._source,
                "received_at": iso_utc(record.arrival),
                "partition_key": record.partition_key,
                "errors": [{"field": "", "message": reason}],
                "data_base64": base64.b64encode(record.data).decode(),
            }
        )
        return Target(Zone.QUARANTINE, dataset or UNROUTED), line
