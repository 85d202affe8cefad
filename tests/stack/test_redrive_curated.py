"""Redrive does not over-count: a quarantined record that became valid and was curated since
(a reprocess under the fixed registry curated its raw line, which still sits in the old
quarantine object) is neither counted as recovered nor written to raw again."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tests.stack.test_replay_parts import MovableClock, registry
from tributary.batch import decode_ndjson_gz, encode_ndjson_gz
from tributary.layout import Zone, object_key
from tributary.memory_writer import MemoryRawWriter
from tributary.raw_writer import RawObject
from tributary_stack.replay.recheck import Rechecker
from tributary_stack.replay.redrive import Redriver, RedriveRequest
from tributary_stream.route import Router

HOUR = datetime(2026, 11, 30, 10, tzinfo=UTC)


def curate_line(record_id: int, raw_key: str) -> bytes:
    envelope = {
        "v": 1,
        "dataset": "posts",
        "id": str(record_id),
        "source": "api:k",
        "received_at": "2026-11-30T10:00:00.000000Z",
        "data": {"id": record_id},
    }
    return orjson.dumps(
        {
            "v": 1,
            "dataset": "posts",
            "stage": "curate",
            "raw_key": raw_key,
            "id": str(record_id),
            "errors": [{"field": "id", "message": "old rule"}],
            "line": orjson.dumps(envelope).decode(),
        }
    )


async def test_records_curated_since_by_a_reprocess_are_not_recovered_again(
    tmp_path: Path,
) -> None:
    reg = registry(tmp_path, ("posts",))  # the fixed registry: every line is valid now
    lake = MemoryRawWriter()
    raw_key = object_key(Zone.RAW, "posts", HOUR, "api", "b1")
    quarantine = object_key(Zone.QUARANTINE, "posts", HOUR, "curate", "api-b1")
    lines = [curate_line(i, raw_key) for i in (1, 2, 3)]
    await lake.put(RawObject(quarantine, encode_ndjson_gz(lines), 3, "c", "c"))
    # The reprocess of that hour under the fixed registry curated 1 and 2 (3 was lost since).
    out = io.BytesIO()
    pq.write_table(pa.table({"_id": ["1", "2"]}), out)
    curated = "curated/posts/year=2026/month=11/day=30/part-0.parquet"
    await lake.put(RawObject(curated, out.getvalue(), 2, "p", "p"))
    clock = MovableClock(datetime(2026, 11, 30, 12, tzinfo=UTC))
    redriver = Redriver(lake, Rechecker(reg, Router(reg, "s")), clock)
    dry = await redriver.run(RedriveRequest("posts", by="t", run_id="d", dry_run=True))
    assert (sum(dry.recovered.values()), sum(dry.curated.values())) == (1, 2)
    run = await redriver.run(RedriveRequest("posts", by="t", run_id="a"))
    assert (sum(run.recovered.values()), sum(run.curated.values())) == (1, 2)
    assert run.counts()["already_curated"] == 2
    written = [k for k in lake.objects if k.startswith("raw/posts/") and "redrive-" in k]
    assert len(written) == 1
    (body,) = [lake.objects[k].body for k in written]
    assert [orjson.loads(line)["id"] for line in decode_ndjson_gz(body)] == ["3"]  # only 3
