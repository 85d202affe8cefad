"""From a stream record to the raw line it becomes, or to quarantine with the reason."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

from tributary.clock import iso_utc
from tributary.dataset import DatasetRegistry
from tributary.envelope import ENVELOPE_VERSION, encode_envelope
from tributary.layout import Zone
from tributary_stream.stream import Record

UNROUTED = "unrouted"  # quarantine dataset for records that name no known dataset


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
    """Turns records into envelope lines: API envelopes pass through; bare JSON is wrapped."""

    def __init__(
        self,
        registry: DatasetRegistry,
        source: str,
        default_dataset: str | None = None,
        dataset_field: str | None = None,
    ) -> None:
        self._registry = registry
        self._source = source
        self._default = default_dataset
        self._field = dataset_field

    def route(self, shard_id: str, record: Record) -> tuple[Target, bytes]:
        """The target and line for `record`; poison goes to quarantine, never raises."""
        record_id = f"{shard_id}-{record.sequence}" + (f".{record.sub}" if record.sub else "")
        try:
            obj = orjson.loads(record.data)
        except orjson.JSONDecodeError as exc:
            return self._poison(record, record_id, self._default, f"not JSON: {exc.msg}")
        if isinstance(obj, dict) and obj.get("v") == ENVELOPE_VERSION and "data" in obj:
            return self._envelope(record, record_id, obj)
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
        own_id = self._registry[dataset].record_id(obj)
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
        self, record: Record, record_id: str, obj: dict[str, object]
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
        line = record.data.strip()
        if b"\n" in line:  # pretty-printed by its producer: one line per record in NDJSON
            line = orjson.dumps(obj)
        return Target(Zone.RAW, dataset), line

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
