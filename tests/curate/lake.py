"""Raw objects for curate tests: envelopes as the API, stream consumer and importer land them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tributary.batch import encode_ndjson_gz
from tributary.envelope import encode_envelope
from tributary.layout import Zone, object_key
from tributary.raw_writer import RawObject, RawWriter


def envelope(
    dataset: str, record_id: str, data: Any, at: str = "2026-03-01T12:00:00.000000Z"
) -> bytes:
    return encode_envelope(dataset, record_id, "api", at, data)


async def land(
    lake: RawWriter, dataset: str, hour: datetime, batch: str, lines: list[bytes]
) -> str:
    key = object_key(Zone.RAW, dataset, hour, "api", batch)
    await lake.put(RawObject(key, encode_ndjson_gz(lines), len(lines), batch, batch))
    return key


def post(i: int, **overrides: Any) -> dict[str, Any]:
    return {"userId": 1 + i % 5, "id": i, "title": f"title {i}", "body": f"body {i}", **overrides}
