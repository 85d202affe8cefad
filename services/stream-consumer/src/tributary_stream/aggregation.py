"""KPL record deaggregation (the KPL's aggregated record format, read without protobuf).

Aggregated record = magic `F3 89 9A C2` + protobuf `AggregatedRecord` + MD5 of that protobuf.
`AggregatedRecord { repeated string partition_key_table = 1; repeated string
explicit_hash_key_table = 2; repeated Record records = 3; }` and `Record { uint64
partition_key_index = 1; uint64 explicit_hash_key_index = 2; bytes data = 3; repeated Tag tags =
4; }`. A record that is not aggregated, or whose checksum does not match, is returned as it is,
as the KCL does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"\xf3\x89\x9a\xc2"


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message; varints as int, bytes as bytes."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated field")
            yield number, buf[pos : pos + length]
            pos += length
        elif wire in (1, 5):  # fixed64 / fixed32
            pos += 8 if wire == 1 else 4
            if pos > len(buf):
                raise ValueError("truncated fixed-width field")
        else:
            raise ValueError(f"unsupported wire type {wire}")


@dataclass(frozen=True, slots=True)
class Deaggregated:
    """The user records of one Kinesis record, or the record itself and why it is not usable."""

    records: list[tuple[str, bytes]]  # (partition key, data); empty for an empty aggregate
    error: str | None = None  # set for a damaged aggregate (records is then the whole record)


def deaggregate(data: bytes, partition_key: str) -> Deaggregated:
    """The user records inside `data` as (partition key, data); `[(partition_key, data)]` if
    it is not an aggregated record, with `error` set if it is a damaged one."""
    whole = [(partition_key, data)]
    if not data.startswith(MAGIC):
        return Deaggregated(whole)
    if len(data) < len(MAGIC) + 16:
        return Deaggregated(whole, "KPL aggregate: truncated (shorter than its checksum)")
    message, digest = data[len(MAGIC) : -16], data[-16:]
    if hashlib.md5(message, usedforsecurity=False).digest() != digest:
        return Deaggregated(whole, "KPL aggregate: checksum mismatch (MD5 of the protobuf)")
    try:
        keys: list[str] = []
        records: list[tuple[int, bytes]] = []
        for number, value in _fields(message):
            if number == 1 and isinstance(value, bytes):
                keys.append(value.decode())
            elif number == 3 and isinstance(value, bytes):
                index, payload = 0, b""
                for inner_number, inner in _fields(value):
                    if inner_number == 1 and isinstance(inner, int):
                        index = inner
                    elif inner_number == 3 and isinstance(inner, bytes):
                        payload = inner
                records.append((index, payload))
    except ValueError as exc:
        return Deaggregated(whole, f"KPL aggregate: truncated or malformed protobuf ({exc})")
    except UnicodeDecodeError:
        return Deaggregated(whole, "KPL aggregate: a partition key is not UTF-8")
    return Deaggregated(
        [
            (keys[index] if index < len(keys) else partition_key, payload)
            for index, payload in records
        ]
    )


def aggregate(records: list[tuple[str, bytes]]) -> bytes:
    """Build a KPL aggregated record (for tests and benchmarks)."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                return bytes(out)

    def field(number: int, payload: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    keys = sorted({key for key, _ in records})
    message = b"".join(field(1, key.encode()) for key in keys)
    for key, data in records:
        inner = varint(1 << 3 | 0) + varint(keys.index(key)) + field(3, data)
        message += field(3, inner)
    return MAGIC + message + hashlib.md5(message, usedforsecurity=False).digest()
