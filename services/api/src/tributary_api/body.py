"""Reading and parsing request bodies: JSON object, array, `{"records": [...]}` or NDJSON.

Bodies are read as a stream with a hard cap, and gzip bodies are inflated with the same cap on
the *decompressed* size, so a zip bomb costs at most the cap in memory and is answered with 413.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

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


async def read_body(chunks: AsyncIterator[bytes], *, gzipped: bool, limit: int) -> bytes:
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
    return bytes(out)


def _decode_error(exc: orjson.JSONDecodeError, where: str) -> BodyError:
    return BodyError(
        400,
        "malformed_body",
        f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
        f"(char {exc.pos})",
    )


def parse_records(body: bytes, fmt: BodyFormat) -> list[Any]:
    """The records in a body. Elements are returned as parsed; validation happens later."""
    if fmt is BodyFormat.NDJSON:
        return _parse_ndjson(body)
    if not body.strip():
        raise BodyError(400, "malformed_body", "body is empty; send at least one record")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _decode_error(exc, "body") from exc
    if isinstance(parsed, list):
        return parsed
    if isinstance(parsed, dict):
        if len(parsed) == 1 and isinstance(parsed.get("records"), list):
            records: list[Any] = parsed["records"]
            return records
        return [parsed]
    raise BodyError(
        400,
        "malformed_body",
        'body must be a JSON object, an array of objects, or {"records": [...]}',
    )


def _parse_ndjson(body: bytes) -> list[Any]:
    records = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise _decode_error(exc, f"NDJSON line {number}") from exc
    if not records:
        raise BodyError(400, "malformed_body", "body has no NDJSON lines; send at least one")
    return records
