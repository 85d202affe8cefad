"""From a stream record to the raw line it becomes, or to quarantine with the reason.

Envelopes are trusted only from the API: it signs each one (HMAC-SHA256 with the key both share,
`ENVELOPE_SIGNING_KEY`), and only a record whose signature verifies keeps its `id`, `source` and
`received_at` (the API's receive time), and gains `arrived_at`, the arrival time the consumer
saw. Anything else that looks like an envelope is a bare record (or, by setting, goes to
quarantine), so a direct Kinesis producer cannot claim another record's id or a receive time:
every line the consumer writes carries the arrival time Kinesis gave the record.

The usual record, an API envelope, is read on a fast path: only the envelope fields routing
needs are decoded (a msgspec Struct; `data` is skipped, not built), its signature is checked on
the record's own bytes, and its line is those bytes with `arrived_at` in place of the signature.
Anything the fast path does not accept as it stands (not decodable so, another version, not
signed, a field empty, an unknown dataset) goes the slow path, which decodes the whole record
and decides as before: the fast path only ever answers what the slow path would.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import msgspec
import orjson

from tributary.clock import iso_utc
from tributary.dataset import DatasetRegistry
from tributary.envelope import ENVELOPE_VERSION, EnvelopeVerifier, encode_envelope
from tributary.layout import Zone
from tributary_stream.stream import Record

UNROUTED = "unrouted"  # quarantine dataset for records that name no known dataset


class _Head(msgspec.Struct):
    """The envelope fields routing reads; `data` must be there, but is not decoded."""

    v: int
    dataset: str
    id: str
    source: str
    received_at: str
    data: msgspec.Raw


_HEAD = msgspec.json.Decoder(_Head)


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
        self._verifier = EnvelopeVerifier(self._keys)
        # The last arrival time seen and its `,"arrived_at":"…"}` suffix: records of one put
        # share it (Kinesis gives milliseconds), and formatting it is a good part of a record.
        self._arrival: datetime | None = None
        self._arrived = b""
        self._targets: dict[str, Target] = {}

    def route(self, shard_id: str, record: Record) -> tuple[Target, bytes]:
        """The target and line for `record`; poison goes to quarantine, never raises."""
        data = record.data
        try:
            head: _Head | None = _HEAD.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            head = None  # msgspec recurses while skipping a deeply nested field
        unsigned = False
        if head is not None and head.v == ENVELOPE_VERSION:
            end = self._verifier.signed_end(data)
            target = self._targets.get(head.dataset)
            if end > 0 and target is not None and head.id and head.source and head.received_at:
                if record.arrival != self._arrival:
                    self._arrived = b',"arrived_at":"' + iso_utc(record.arrival).encode() + b'"}'
                    self._arrival = record.arrival
                return target, data[:end] + self._arrived
            unsigned = end < 0
        return self._route(shard_id, record, unsigned)

    def _route(self, shard_id: str, record: Record, unsigned: bool = False) -> tuple[Target, bytes]:
        """The slow path: the whole record decoded. `unsigned`: the fast path found no valid
        signature on it already."""
        try:
            obj = orjson.loads(record.data)
        except orjson.JSONDecodeError as exc:
            record_id = _record_id(shard_id, record)
            return self._poison(record, record_id, self._default, f"not JSON: {exc.msg}")
        forged = False
        if isinstance(obj, dict) and obj.get("v") == ENVELOPE_VERSION and "data" in obj:
            line = None if unsigned else self._verifier.verify(record.data)
            if line is not None:
                return self._envelope(record, shard_id, obj, line)
            if self._unsigned is UnsignedEnvelopes.QUARANTINE:
                named = obj.get("dataset")
                return self._poison(
                    record,
                    _record_id(shard_id, record),
                    named if isinstance(named, str) else None,
                    "envelope not signed by the API (ENVELOPE_SIGNING_KEY); "
                    "send bare records, or envelopes through the API",
                )
            forged = True
        record_id = _record_id(shard_id, record)
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
        try:
            own_id = None if forged else self._registry[dataset].envelope_id(obj)
            line = encode_envelope(
                dataset, own_id or record_id, self._source, iso_utc(record.arrival), obj
            )
        except TypeError as exc:  # orjson.JSONEncodeError: nested past the encoder's 254 levels
            return self._poison(record, record_id, dataset, f"nested too deep to re-encode: {exc}")
        return Target(Zone.RAW, dataset), line

    def reject(self, shard_id: str, record: Record, reason: str) -> tuple[Target, bytes]:
        """Quarantine `record` with `reason` (one the consumer cannot use, e.g. a damaged
        KPL aggregate), like poison found by `route`."""
        return self._poison(record, _record_id(shard_id, record), self._default, reason)

    def _envelope(
        self, record: Record, shard_id: str, obj: dict[str, object], line: bytes
    ) -> tuple[Target, bytes]:
        dataset = obj.get("dataset")
        target = self._targets.get(dataset) if isinstance(dataset, str) else None
        if target is None:
            if not isinstance(dataset, str) or dataset not in self._registry:
                return self._poison(
                    record,
                    _record_id(shard_id, record),
                    None,
                    f"envelope names unknown dataset {dataset!r}",
                )
            target = self._targets[dataset] = Target(Zone.RAW, dataset)
        for name in ("id", "source", "received_at"):
            if not isinstance(obj.get(name), str) or not obj[name]:
                return self._poison(
                    record,
                    _record_id(shard_id, record),
                    target.dataset,
                    f"bad envelope: {name!r} must be a non-empty string",
                )
        # The API encodes it compact (one line, `}` last); the consumer adds when it saw it.
        if record.arrival != self._arrival:
            self._arrived = b',"arrived_at":"' + iso_utc(record.arrival).encode() + b'"}'
            self._arrival = record.arrival
        return target, line[:-1] + self._arrived

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


def _record_id(shard_id: str, record: Record) -> str:
    """`<shardId>-<sequence>[.<sub>]`: the id of a record that brings none of its own."""
    return f"{shard_id}-{record.sequence}" + (f".{record.sub}" if record.sub else "")
