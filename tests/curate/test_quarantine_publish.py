"""Curate's quarantine objects across reruns under another registry (a reprocess): every line
of a raw object that a run quarantines is stored once, none is dropped by the create-only 412."""

from __future__ import annotations

from collections.abc import Awaitable

import orjson

from tributary.batch import decode_ndjson_gz
from tributary.memory_writer import MemoryRawWriter
from tributary.raw_writer import WriteOutcome
from tributary_curate.outcome import publish_quarantine

RAW = "raw/posts/year=2026/month=11/day=30/hour=10/api-r1.ndjson.gz"
KEY = "quarantine/posts/year=2026/month=11/day=30/hour=10/curate-api-r1.ndjson.gz"


def problem(n: int, reason: str) -> bytes:
    line = orjson.dumps({"id": str(n), "data": {"n": n}}).decode()
    return orjson.dumps(
        {"stage": "curate", "raw_key": RAW, "errors": [{"message": reason}], "line": line}
    )


async def direct(request: Awaitable[WriteOutcome]) -> WriteOutcome:
    return await request


def stored(lake: MemoryRawWriter) -> list[str]:
    """Every quarantined raw line's id, over all the raw object's quarantine objects."""
    return sorted(
        orjson.loads(orjson.loads(line)["line"])["id"]
        for key, obj in lake.objects.items()
        if key.startswith(KEY.removesuffix(".ndjson.gz"))
        for line in decode_ndjson_gz(obj.body)
    )


async def test_a_rerun_under_a_stricter_registry_quarantines_what_it_adds_once() -> None:
    lake = MemoryRawWriter()
    assert await publish_quarantine(lake, KEY, [problem(1, "v1"), problem(2, "v1")], 1, direct)
    # A reprocess under v3: 3 and 4 are now invalid too (1 and 2 with other reasons).
    v3 = [problem(n, "v3") for n in (1, 2, 3, 4)]
    assert await publish_quarantine(lake, KEY, v3, 2, direct) == 1
    assert stored(lake) == ["1", "2", "3", "4"]
    assert await publish_quarantine(lake, KEY, v3, 2, direct) == 0  # killed and rerun
    assert await publish_quarantine(lake, KEY, v3, 3, direct) == 0  # reprocessed again
    # v4 rejects 5 as well: one more object, with 5 only.
    assert await publish_quarantine(lake, KEY, [problem(5, "v4"), problem(1, "v4")], 4, direct)
    assert stored(lake) == ["1", "2", "3", "4", "5"]
    assert sorted(lake.objects) == [
        KEY,
        KEY.replace(".ndjson.gz", ".rerun-1.ndjson.gz"),
        KEY.replace(".ndjson.gz", ".rerun-2.ndjson.gz"),
    ]
