"""Look at the curated zone with DuckDB: the Parquet files synced to a local cache folder, one
view per table: datasets and child tables with their Hive partitions as columns; snapshot
tables (`<dataset>_current`, derived) over the one snapshot their pointer names, so a query
sees one whole snapshot, never a mix (the pointers are cached in `_snapshots.json`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import orjson

from tributary.layout import Zone
from tributary.raw_writer import RawWriter
from tributary_curate.bookmark import BookmarkStore
from tributary_curate.snapshots import snapshot_of
from tributary_curate.staging import write_atomically

SNAPSHOTS_FILE = "_snapshots.json"

SYNC_CONCURRENCY = 16


async def snapshot_locations(
    bookmarks: BookmarkStore, tables: Sequence[str]
) -> dict[str, str | None]:
    """The folder of each snapshot table's current snapshot; None before the first (a folder
    a crashed first run left is no table yet)."""
    found: dict[str, str | None] = {}
    for table in tables:
        snapshot = snapshot_of(await bookmarks.get(table))
        found[table] = None if snapshot is None else str(snapshot["location"])
    return found


async def sync_curated(
    lake: RawWriter, cache: Path, snapshots: dict[str, str | None] | None = None
) -> int:
    """Mirror `curated/` into `cache` (files are immutable: fetch new ones, drop vanished ones),
    of a snapshot table only its current snapshot (`snapshots`: table → folder); returns how
    many files were fetched."""
    snapshots = snapshots or {}

    def wanted(key: str) -> bool:
        table = key.split("/", 2)[1]
        if table not in snapshots:
            return True
        location = snapshots[table]
        return location is not None and key.startswith(location)

    keys = [k for k in await lake.keys(f"{Zone.CURATED}/") if k.endswith(".parquet") and wanted(k)]
    missing = [k for k in keys if not (cache / k).exists()]
    gate = asyncio.Semaphore(SYNC_CONCURRENCY)

    async def fetch(key: str) -> None:
        async with gate:
            body = await lake.get(key)
        await asyncio.to_thread(write_atomically, cache / key, body)

    await asyncio.gather(*(fetch(k) for k in missing))
    # After the files: a view is never pointed at a snapshot not cached yet. Before the prune:
    # until the new pointers are written, a reader (`query --no-sync`, or after a sync that
    # failed above) reads the old ones, whose files are all still here.
    await asyncio.to_thread(write_atomically, cache / SNAPSHOTS_FILE, orjson.dumps(snapshots))
    await asyncio.to_thread(_prune, cache, keys)
    return len(missing)


def _prune(cache: Path, keys: list[str]) -> None:
    """Delete cached files no longer wanted (gone from the lake, or of a superseded snapshot)."""
    wanted = {cache / k for k in keys}
    for path in cache.glob(f"{Zone.CURATED}/**/*.parquet"):
        if path not in wanted:
            path.unlink()


def connect(cache: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per curated dataset found in `cache`."""
    db = duckdb.connect()
    root = cache / Zone.CURATED
    pointers = cache / SNAPSHOTS_FILE
    snapshots: dict[str, str | None] = (
        orjson.loads(pointers.read_bytes()) if pointers.exists() else {}
    )
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.exists() else []:
        location = snapshots.get(folder.name)
        if folder.name in snapshots and location is None:
            continue  # a snapshot table before its first snapshot
        if location is not None:  # one snapshot, unpartitioned
            here = cache / location
            files, hive, found = here / "*.parquet", "false", any(here.glob("*.parquet"))
        else:
            files, hive, found = folder / "**" / "*.parquet", "true", any(folder.rglob("*.parquet"))
        if not found:
            continue
        pattern = str(files).replace("'", "''")
        db.execute(
            f"CREATE VIEW \"{folder.name}\" AS SELECT * FROM read_parquet('{pattern}', "
            f"hive_partitioning = {hive}, union_by_name = true)"
        )
    return db


def run_query(cache: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of `sql` over the cached curated zone."""
    db = connect(cache)
    try:
        result = db.execute(sql)
        columns = [d[0] for d in result.description or []]
        return columns, result.fetchall()
    finally:
        db.close()
