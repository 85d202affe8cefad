"""Look at the curated zone with DuckDB: the Parquet files synced to a local cache folder, one
view per dataset (Hive partitions as columns)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import duckdb

from tributary.layout import Zone
from tributary.raw_writer import RawWriter
from tributary_curate.staging import write_atomically

SYNC_CONCURRENCY = 16


async def sync_curated(lake: RawWriter, cache: Path) -> int:
    """Mirror `curated/` into `cache` (files are immutable: fetch new ones, drop vanished ones);
    returns how many files were fetched."""
    keys = [k for k in await lake.keys(f"{Zone.CURATED}/") if k.endswith(".parquet")]
    missing = await asyncio.to_thread(_prune, cache, keys)
    gate = asyncio.Semaphore(SYNC_CONCURRENCY)

    async def fetch(key: str) -> None:
        async with gate:
            body = await lake.get(key)
        await asyncio.to_thread(write_atomically, cache / key, body)

    await asyncio.gather(*(fetch(k) for k in missing))
    return len(missing)


def _prune(cache: Path, keys: list[str]) -> list[str]:
    """Delete cached files no longer in the lake; the keys not cached yet."""
    wanted = {cache / k for k in keys}
    for path in cache.glob(f"{Zone.CURATED}/**/*.parquet"):
        if path not in wanted:
            path.unlink()
    return [k for k in keys if not (cache / k).exists()]


def connect(cache: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per curated dataset found in `cache`."""
    db = duckdb.connect()
    root = cache / Zone.CURATED
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.exists() else []:
        if not any(folder.rglob("*.parquet")):
            continue
        pattern = str(folder / "**" / "*.parquet").replace("'", "''")
        db.execute(
            f"CREATE VIEW \"{folder.name}\" AS SELECT * FROM read_parquet('{pattern}', "
            "hive_partitioning = true, union_by_name = true)"
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
