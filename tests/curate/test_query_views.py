"""`query`'s DuckDB views: a dataset over all its partitions, a snapshot table over the one
snapshot its pointer names (an older one, or a folder a crashed first run left, is never seen)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tributary.errors import TransientError
from tributary.raw_writer import RawObject
from tributary.testing import MemoryRawWriter
from tributary_curate.bookmark import MemoryBookmarkStore
from tributary_curate.query import connect, snapshot_locations, sync_curated


def parquet(rows: list[dict[str, object]]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


async def put(lake: MemoryRawWriter, key: str, rows: list[dict[str, object]]) -> None:
    await lake.put(RawObject(key, parquet(rows), len(rows), "t", "t"))


async def test_views_follow_the_pointers(tmp_path: Path) -> None:
    lake, bookmarks = MemoryRawWriter(), MemoryBookmarkStore()
    await put(lake, "curated/items/year=2026/month=03/day=01/r1.snappy.parquet", [{"id": 1}])
    await put(lake, "curated/items/year=2026/month=03/day=02/r2.snappy.parquet", [{"id": 2}])
    old, new = "curated/items_current/snapshot-1-a/", "curated/items_current/snapshot-2-b/"
    await put(lake, f"{old}part-0.snappy.parquet", [{"id": 1, "v": "old"}])
    await put(lake, f"{new}part-0.snappy.parquet", [{"id": 1, "v": "new"}])
    await put(lake, "curated/posts_with_users/snapshot-1-c/part-0.snappy.parquet", [{"id": 9}])
    mark = await bookmarks.get("items_current")
    pointer = {"snapshot": {"id": "snapshot-2-b", "location": new}}
    await bookmarks.put(replace(mark, runs=2, last_run=pointer))

    tables = ["items_current", "posts_with_users"]
    await sync_curated(lake, tmp_path, await snapshot_locations(bookmarks, tables))
    db = connect(tmp_path)
    assert db.execute("select id, v from items_current").fetchall() == [(1, "new")]
    assert db.execute("select id, day from items order by id").fetchall() == [(1, "01"), (2, "02")]
    found = db.execute("select view_name from duckdb_views() where not internal").fetchall()
    views = {r[0] for r in found}
    assert views == {"items", "items_current"}  # posts_with_users has no snapshot yet
    assert not (tmp_path / old).exists()  # only the current snapshot is fetched


class FailingGets(MemoryRawWriter):
    """A lake whose GetObject fails for keys under `failing`."""

    failing = "curated/items_current/snapshot-2-b/"

    async def get(self, key: str) -> bytes:
        if key.startswith(self.failing):
            raise TransientError(f"GetObject {key}: connection reset")
        return await super().get(key)


async def test_a_sync_failing_halfway_leaves_the_old_snapshot_whole(tmp_path: Path) -> None:
    lake, bookmarks = FailingGets(), MemoryBookmarkStore()
    old, new = "curated/items_current/snapshot-1-a/", "curated/items_current/snapshot-2-b/"
    await put(lake, f"{old}part-0.snappy.parquet", [{"id": 1, "v": "old"}])
    await put(lake, f"{old}part-1.snappy.parquet", [{"id": 2, "v": "old"}])
    mark = await bookmarks.get("items_current")
    mark = await bookmarks.put(
        replace(mark, runs=1, last_run={"snapshot": {"id": "snapshot-1-a", "location": old}})
    )
    await sync_curated(lake, tmp_path, await snapshot_locations(bookmarks, ["items_current"]))
    await put(lake, f"{new}part-0.snappy.parquet", [{"id": 1, "v": "new"}])
    await bookmarks.put(
        replace(mark, runs=2, last_run={"snapshot": {"id": "snapshot-2-b", "location": new}})
    )
    with pytest.raises(TransientError):
        await sync_curated(lake, tmp_path, await snapshot_locations(bookmarks, ["items_current"]))
    db = connect(tmp_path)  # as `query --no-sync` does
    assert db.execute("select id, v from items_current order by id").fetchall() == [
        (1, "old"),
        (2, "old"),
    ]
