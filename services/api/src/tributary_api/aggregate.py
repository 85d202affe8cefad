"""KPL-style aggregation for the Kinesis sink (opt-in: `API_KINESIS_AGGREGATE=true`).

Many envelopes travel in one Kinesis record in the KPL's aggregated record format, which the
stream consumer already de-aggregates (`tributary_stream.aggregation`): magic `F3 89 9A C2`,
the protobuf `AggregatedRecord { repeated string partition_key_table = 1; repeated Record
records = 3; }` with `Record { uint64 partition_key_index = 1; bytes data = 3; }`, then the MD5
of the protobuf. Kinesis bills each record in 25 KB payload units (rounded up) and takes at most
500 records per PutRecords call, so a 300-byte envelope costs one unit alone and ~1/80 of one in
an aggregate.

Records are grouped by the shard their partition key maps to: the MD5 of the key as a 128-bit
integer, against the open shards' hash key ranges from ListShards. Each aggregate carries the
first record's partition key and, as its `ExplicitHashKey`, that key's own hash: it lands on
the shard every record in it maps to (even if the shard map is stale, all its records land on
one shard together, in order). Within a shard the records keep the request's order, so the
records of one partition key stay in order too.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tributary_api.sink import OutRecord

MAGIC = b"\xf3\x89\x9a\xc2"
CHECKSUM_BYTES = 16
# The KPL's default AggregationMaxSize: aggregates of about two 25 KB payload units.
DEFAULT_MAX_AGGREGATE_BYTES = 51_200
KINESIS_MAX_RECORD_BYTES = 1024 * 1024  # data + partition key


def hash_key(partition_key: str) -> int:
    """The 128-bit hash Kinesis maps a partition key to a shard with (MD5, big-endian)."""
    return int.from_bytes(hashlib.md5(partition_key.encode(), usedforsecurity=False).digest())


@dataclass(frozen=True, slots=True)
class ShardMap:
    """The open shards' hash key ranges, sorted by their starting hash key."""

    starts: tuple[int, ...]
    shard_ids: tuple[str, ...]

    @classmethod
    def of(cls, ranges: Sequence[tuple[str, int, int]]) -> ShardMap:
        """From (shard id, starting hash key, ending hash key) of the open shards."""
        ordered = sorted(ranges, key=lambda r: r[1])
        if not ordered:
            raise ValueError("the stream has no open shard")
        return cls(tuple(r[1] for r in ordered), tuple(r[0] for r in ordered))

    def shard_of(self, hashed: int) -> int:
        """The index of the shard whose range holds `hashed` (the open shards cover the hash
        space; a stale map still gives one shard per key)."""
        return max(0, bisect_right(self.starts, hashed) - 1)


@dataclass(frozen=True, slots=True)
class PutEntry:
    """One PutRecords entry: an aggregate (or a record sent alone) and the envelopes in it."""

    data: bytes
    partition_key: str
    explicit_hash_key: str | None
    records: tuple[OutRecord, ...]

    @property
    def weight(self) -> int:
        """What counts against PutRecords' 5 MiB and a record's 1 MiB: data + partition key."""
        return len(self.data) + len(self.partition_key.encode())


def _varint_of(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


# Indices and envelope lengths are mostly below 2**14 (two varint bytes): looked up, not built.
_SMALL = 1 << 14
_VARINTS = tuple(_varint_of(i) for i in range(_SMALL))


def _varint(value: int) -> bytes:
    return _VARINTS[value] if value < _SMALL else _varint_of(value)


def _varint_len(value: int) -> int:
    if value < 128:
        return 1
    return 2 if value < _SMALL else (value.bit_length() + 6) // 7


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _record_field(key_index: int, data: bytes) -> bytes:
    """Field 3 of `AggregatedRecord`: one `Record { partition_key_index; data }`."""
    inner = b"\x08" + _varint(key_index) + b"\x1a" + _varint(len(data)) + data
    return b"\x1a" + _varint(len(inner)) + inner


def _record_field_len(key_index: int, data_len: int) -> int:
    inner = 2 + _varint_len(key_index) + _varint_len(data_len) + data_len
    return 1 + _varint_len(inner) + inner


def encode_aggregate(records: Sequence[tuple[str, bytes]]) -> bytes:
    """A KPL aggregated record of (partition key, data) pairs, in order; each distinct key
    once in the key table, in the order keys first appear."""
    index: dict[str, int] = {}
    for key, _ in records:
        index.setdefault(key, len(index))
    parts = [_field(1, key.encode()) for key in index]
    parts += [_record_field(index[key], data) for key, data in records]
    message = b"".join(parts)
    return MAGIC + message + hashlib.md5(message, usedforsecurity=False).digest()


class _Builder:
    """An aggregate being filled, with its exact encoded size (data + its partition key)."""

    __slots__ = ("keys", "outer_key_bytes", "records", "size")

    def __init__(self, first_key: str) -> None:
        self.records: list[OutRecord] = []
        self.keys: dict[str, int] = {}
        self.outer_key_bytes = len(first_key.encode())
        self.size = len(MAGIC) + CHECKSUM_BYTES + self.outer_key_bytes

    def add(self, record: OutRecord, max_bytes: int) -> bool:
        """Add `record` if the aggregate stays within `max_bytes`; False (unchanged) if not."""
        key = record.partition_key
        index = self.keys.get(key)
        size = self.size
        if index is None:
            index = len(self.keys)
            raw = len(key.encode())
            size += 1 + _varint_len(raw) + raw
        size += _record_field_len(index, len(record.line))
        if size > max_bytes:
            return False
        self.keys.setdefault(key, index)
        self.size = size
        self.records.append(record)
        return True

    def entry(self) -> PutEntry:
        keys = self.keys
        parts = [_field(1, key.encode()) for key in keys]
        parts += [_record_field(keys[r.partition_key], r.line) for r in self.records]
        message = b"".join(parts)
        data = MAGIC + message + hashlib.md5(message, usedforsecurity=False).digest()
        first = self.records[0].partition_key
        return PutEntry(data, first, str(hash_key(first)), tuple(self.records))


def aggregate_by_shard(
    records: Sequence[OutRecord], shards: ShardMap, max_bytes: int
) -> list[list[PutEntry]]:
    """The PutRecords entries of `records`, one list per shard used (in request order within
    each): aggregates of at most `max_bytes` (data + partition key); a record too large for
    one is sent alone, as it is."""
    queues: dict[int, list[PutEntry]] = {}
    open_: dict[int, _Builder] = {}
    shard_of_key: dict[str, int] = {}
    for record in records:
        key = record.partition_key
        shard = shard_of_key.get(key)
        if shard is None:
            shard = shard_of_key[key] = shards.shard_of(hash_key(key))
        builder = open_.get(shard)
        if builder is not None and builder.add(record, max_bytes):
            continue
        queue = queues.setdefault(shard, [])
        if builder is not None:
            queue.append(builder.entry())
        builder = _Builder(key)
        if builder.add(record, max_bytes):
            open_[shard] = builder
        else:  # too large for an aggregate: the record as it is
            queue.append(PutEntry(record.line, key, None, (record,)))
            open_.pop(shard, None)
    for shard, builder in open_.items():
        queues[shard].append(builder.entry())
    return list(queues.values())


def payload_units(weight: int, unit: int = 25 * 1024) -> int:
    """Kinesis PUT payload units of one record of `weight` bytes (25 KB each, rounded up)."""
    return max(1, -(-weight // unit))
