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
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def deaggregate(data: bytes, partition_key: str) -> list[tuple[str, bytes]]:
    """The user records inside `data` as (partition key, data); `[(partition_key, data)]` if
    it is not a valid aggregated record."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 16:
        return [(partition_key, data)]
    message, digest = data[len(MAGIC) : -16], data[-16:]
    if hashlib.md5(message, usedforsecurity=False).digest() != digest:
        return [(partition_key, data)]
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
        return [
            (keys[index] if index < len(keys) else partition_key, payload)
            for index, payload in records
        ]
    except (ValueError, UnicodeDecodeError):
        return [(partition_key, data)]


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
