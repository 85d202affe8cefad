"""Reading and parsing request bodies: JSON object, array, `{"records": [...]}` or NDJSON.

Bodies are read as a stream with a hard cap, and gzip bodies are inflated with the same cap on
the *decompressed* size, so a zip bomb costs at most the cap in memory and is answered with 413.

Parsed JSON takes far more memory than its text (tiny values such as `[{},{},…]` cost tens of
bytes of Python objects per body byte). So before parsing, the values a body holds are counted on
its bytes (commas, brackets and braces, outside strings) and a body with more than `max_values`
is refused with 413: what parsing may hold is bounded by the allowed values, whatever the
body's shape. bench/api_memory.py measures the peak RSS of 8 such bodies in flight.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Annotated, Any, cast

import msgspec
import orjson

from tributary.errors import PermanentError


class BodyFormat(StrEnum):
    """Accepted body media types."""

    JSON = "application/json"
    NDJSON = "application/x-ndjson"


_MEDIA_TYPES = {
    "application/json": BodyFormat.JSON,
    "text/json": BodyFormat.JSON,
    "application/x-ndjson": BodyFormat.NDJSON,
    "application/ndjson": BodyFormat.NDJSON,
    "application/jsonl": BodyFormat.NDJSON,
    "application/x-jsonlines": BodyFormat.NDJSON,
}


class BodyError(PermanentError):
    """The request body cannot be used; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def body_format(content_type: str | None) -> BodyFormat:
    """The body format for a Content-Type header (JSON when absent); 415 when unsupported."""
    if not content_type:
        return BodyFormat.JSON
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        return _MEDIA_TYPES[media]
    except KeyError:
        raise BodyError(
            415,
            "unsupported_media_type",
            f"Content-Type {media!r} is not supported; send application/json or "
            "application/x-ndjson",
        ) from None


def is_gzip(content_encoding: str | None) -> bool:
    """True for gzip, False for identity/absent; 415 for any other encoding."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return True
    if encoding in ("identity", ""):
        return False
    raise BodyError(
        415,
        "unsupported_encoding",
        f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding",
    )


def _too_large(limit: int, what: str) -> BodyError:
    return BodyError(413, "body_too_large", f"{what} exceeds the limit of {limit} bytes")


async def read_body(chunks: AsyncIterator[bytes], *, gzipped: bool, limit: int) -> bytearray:
    """Collect the body, never holding more than `limit` bytes (wire or decompressed)."""
    wire = 0
    out = bytearray()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    async for chunk in chunks:
        wire += len(chunk)
        if wire > limit:
            raise _too_large(limit, "request body")
        if inflater is None:
            out += chunk
            continue
        data = chunk
        while data:
            try:
                out += inflater.decompress(data, limit + 1 - len(out))
            except zlib.error as exc:
                raise BodyError(400, "bad_gzip", f"body is not valid gzip: {exc}") from exc
            if len(out) > limit:
                raise _too_large(limit, "decompressed request body")
            if inflater.eof:  # concatenated gzip members are one stream (RFC 1952)
                data = inflater.unused_data
                if data:
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                data = inflater.unconsumed_tail
    if inflater is not None and not inflater.eof and wire:
        raise BodyError(400, "bad_gzip", "gzip body is truncated")
    return out  # not copied into bytes: the parser reads a bytearray as it is


def _decode_error(exc: orjson.JSONDecodeError, where: str) -> BodyError:
    return BodyError(
        400,
        "malformed_body",
        f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
        f"(char {exc.pos})",
    )


DEFAULT_MAX_VALUES = 100_000
# A JSON string, escapes included (the unrolled form: no backtracking per character).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _values_bound(body: bytes | bytearray, fmt: BodyFormat) -> int:
    """At least the number of JSON values in `body`.

    A container of k > 0 members has k - 1 commas, so all members number commas + non-empty
    containers; plus the root (one per NDJSON line). Brackets inside strings only raise the
    count: each `{}` there also brings its `{`.
    """
    lines = body.count(b"\n") if fmt is BodyFormat.NDJSON else 0
    return _structural(body) + lines + 1


def _structural(text: bytes | bytearray) -> int:
    """What `text` adds to `_values_bound`."""
    return (
        text.count(b",")
        + text.count(b"{")
        + text.count(b"[")
        - text.count(b"{}")
        - text.count(b"[]")
    )


def check_values(body: bytes | bytearray, fmt: BodyFormat, max_values: int) -> None:
    """Refuse (413) a body holding more than `max_values` JSON values, without parsing it.

    Costs a few byte counts for most bodies. Only one whose strings may hold commas or brackets
    is scanned string by string (at most 2 x `max_values` strings, one at a time: no copy).
    """
    bound = _values_bound(body, fmt)
    if bound <= max_values:
        return
    # Every value has at most one key, so more than 2 x max_values strings is too many values.
    strings = (body.count(b'"') - body.count(b'\\"')) // 2
    if strings <= 2 * max_values:
        inside = sum(_structural(m[0]) for m in _STRING.finditer(body))
        if bound - inside <= max_values:
            return
    raise BodyError(
        413,
        "too_many_values",
        f"body holds more than {max_values} JSON values (objects, arrays, strings, numbers); "
        "the limit bounds the memory one request takes: split the batch",
    )


# Strings (skipped whole, in C) and the structural bytes a record count needs.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
_NDJSON_LINE = re.compile(rb"^[ \t\r]*[^\s]", re.MULTILINE)
_RECORDS_KEY = b'"records"'


def records_bound(body: bytes | bytearray, fmt: BodyFormat, stop: int) -> int:
    """At least the number of records `body` holds, counted on its bytes (no parsing); the count
    stops early once it passes `stop`.

    NDJSON: non-blank lines. A JSON array: its elements (commas at depth 1, plus one). A
    `{"records": [...]}` object: the array's elements; any other object is one record. The scan
    runs once per string and structural byte, at most ~2 x the values `check_values` allowed.
    """
    if fmt is BodyFormat.NDJSON:
        if body.count(b"\n") < stop:
            return body.count(b"\n") + 1
        lines = 0
        for _ in _NDJSON_LINE.finditer(body):
            lines += 1
            if lines > stop:
                break
        return lines
    if body.count(b",") < stop:  # every record after the first follows a comma
        return body.count(b",") + 1
    start = len(body) - len(body.lstrip())
    first = body[start : start + 1]
    if first == b"[":
        return _elements(body, start, stop)
    if first == b"{":
        return _records_member(body, start, stop)
    return 1


def _elements(body: bytes | bytearray, start: int, stop: int) -> int:
    """Elements of the root array opening at `start` (commas at depth 1, plus one)."""
    depth, commas = 0, 0
    for match in _TOKEN.finditer(body, start):
        token = match[0]
        if token in (b"[", b"{"):
            depth += 1
        elif token in (b"]", b"}"):
            depth -= 1
            if not depth:
                break
        elif token == b"," and depth == 1:
            commas += 1
            if commas >= stop:
                break
    return commas + 1


def _records_member(body: bytes | bytearray, start: int, stop: int) -> int:
    """Elements of the `records` array when the root object is `{"records": [...]}` alone;
    1 (one record) for any other object."""
    depth, commas, in_records, key_expected, seen_key = 0, 0, False, True, b""
    for match in _TOKEN.finditer(body, start):
        token = match[0]
        if token in (b"[", b"{"):
            depth += 1
            if depth == 2 and seen_key == _RECORDS_KEY and token == b"[":
                in_records = True
        elif token in (b"]", b"}"):
            depth -= 1
            if depth == 1:
                in_records = False
            if not depth:
                break
        elif token == b",":
            if depth == 1:
                return 1  # a second member: the object is one record
            if in_records and depth == 2:
                commas += 1
        elif depth == 1 and key_expected:
            seen_key, key_expected = token, False
    return commas + 1 if seen_key == _RECORDS_KEY else 1


def check_counts(
    body: bytes | bytearray,
    fmt: BodyFormat,
    max_values: int = DEFAULT_MAX_VALUES,
    max_records: int | None = None,
) -> None:
    """Refuse (413) a body with more than `max_values` values or `max_records` records, on its
    bytes, before anything parses it."""
    commas = check_value_count(body, fmt, max_values)
    lines = body.count(b"\n") if fmt is BodyFormat.NDJSON else 0
    if max_records is None or (lines if fmt is BodyFormat.NDJSON else commas) < max_records:
        return  # records_bound would count commas + 1 or lines + 1: not above the limit
    if (count := records_bound(body, fmt, max_records)) > max_records:
        raise BodyError(
            413,
            "too_many_records",
            f"more than {max_records} records in one request ({count} counted); "
            f"the limit is {max_records}: split the batch",
        )


def check_value_count(body: bytes | bytearray, fmt: BodyFormat, max_values: int) -> int:
    """`check_values`, in three single-byte counts for a body far from the limit (commas +
    brackets + braces + lines bound the values from above); returns the commas counted."""
    commas = body.count(b",")
    lines = body.count(b"\n") if fmt is BodyFormat.NDJSON else 0
    if commas + body.count(b"{") + body.count(b"[") + lines + 1 > max_values:
        check_values(body, fmt, max_values)  # near the limit: the exact count
    return commas


def record_texts(
    body: bytes | bytearray, fmt: BodyFormat, max_records: int | None = None
) -> list[bytes] | None:
    """Each record's JSON text when the body is a non-empty JSON array (of at most
    `max_records`) or NDJSON; None for any other body (one object, `{"records": [...]}`,
    malformed, empty, too many records), which `parse_records` then reads whole and refuses with
    the error message it always gave.

    Nothing is parsed into Python values: a record's text is what its envelope's `data` holds.
    """
    if fmt is BodyFormat.NDJSON:
        # Blank lines as `_parse_ndjson` sees them; around a record only JSON's own whitespace
        # is taken off (a form feed there is orjson's error to report, on the slow path).
        texts = [bytes(line.strip(b" \t\r")) for line in body.split(b"\n") if line.strip()]
    else:
        try:
            texts = [bytes(raw) for raw in raw_array(max_records)(body)]
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
    return texts or None


@functools.cache
def raw_array(max_records: int | None) -> Callable[[bytes | bytearray], list[msgspec.Raw]]:
    """A decoder of a JSON array into each element's text, raising `ValidationError` past
    `max_records` elements. msgspec checks the length only after decoding the whole array, so
    its memory is bounded by the value count checked before (`check_value_count`), not here."""
    if max_records is None:
        return msgspec.json.Decoder(list[msgspec.Raw]).decode
    bounded = Annotated[list[msgspec.Raw], msgspec.Meta(max_length=max_records)]
    return msgspec.json.Decoder(bounded).decode


def parse_records(
    body: bytes | bytearray,
    fmt: BodyFormat,
    max_values: int = DEFAULT_MAX_VALUES,
    max_records: int | None = None,
) -> list[Any]:
    """The records in a body. Elements are returned as parsed; validation happens later.

    Raises `BodyError` 413 before parsing when the body holds more than `max_values` values or
    more than `max_records` records, and 400 when it holds none.
    """
    check_counts(body, fmt, max_values, max_records)
    if fmt is BodyFormat.NDJSON:
        return _parse_ndjson(body)
    if not body or body.isspace():
        raise BodyError(400, "malformed_body", "body is empty; send at least one record")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _decode_error(exc, "body") from exc
    if isinstance(parsed, dict):
        if len(parsed) == 1 and isinstance(parsed.get("records"), list):
            parsed = parsed["records"]
        else:
            return [parsed]
    if isinstance(parsed, list):
        if not parsed:
            raise BodyError(400, "malformed_body", "body holds no record; send at least one")
        return parsed
    raise BodyError(
        400,
        "malformed_body",
        'body must be a JSON object, an array of objects, or {"records": [...]}',
    )


def _parse_ndjson(body: bytes | bytearray) -> list[Any]:
    records = []
    # bytes or bytearray lines alike: orjson reads both.
    for number, line in enumerate(cast("list[bytes]", body.split(b"\n")), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise _decode_error(exc, f"NDJSON line {number}") from exc
    if not records:
        raise BodyError(400, "malformed_body", "body has no NDJSON lines; send at least one")
    return records
