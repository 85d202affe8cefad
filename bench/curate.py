"""Benchmark the curate job beside a bare Spark format switch and DuckDB, same run, same files.

1M generated `posts` envelopes (~300 B each, 1% invalid, 1% duplicates) in 100 gzip NDJSON raw
objects on local disk:
- ours: the real CurateJob (stage → validate → type → map → dedupe → anti-join → Parquet →
  publish create-only → catalog (in memory) → bookmark), Spark local[*];
- bare Spark: `spark.read.json(files).write.parquet(…)` in the same session (schema inferred,
  no validation, no dedupe): the floor for a Spark job reading these files. Target ratio ≤ 1.5.
  A warm-up on 20k records runs first; the measured rounds are interleaved;
- DuckDB: `COPY (SELECT * FROM read_json(files)) TO … (FORMAT parquet)`, the single-node
  reference.
Run: `make bench` or `python bench/curate.py [--records N] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = 100

from report import Report, Table, met, save  # noqa: E402
from tributary.batch import encode_ndjson_gz  # noqa: E402
from tributary.clock import SystemClock  # noqa: E402
from tributary.dataset import DatasetRegistry  # noqa: E402
from tributary.envelope import encode_envelope  # noqa: E402
from tributary.file_writer import FileRawWriter  # noqa: E402
from tributary.layout import Zone, object_key  # noqa: E402
from tributary.raw_writer import RawObject  # noqa: E402
from tributary.table import render  # noqa: E402
from tributary_curate.bookmark import MemoryBookmarkStore  # noqa: E402
from tributary_curate.catalog import MemoryCatalog  # noqa: E402
from tributary_curate.claim import MemoryClaimStore  # noqa: E402
from tributary_curate.job import CurateJob  # noqa: E402
from tributary_curate.spark import local_session  # noqa: E402
from tributary_curate.staging import LocalStaging  # noqa: E402

REGISTRY = DatasetRegistry.from_file(ROOT / "config" / "datasets.yaml")


class FileIndex:
    """`LakeIndex` over the local files the benchmark lands (listing only)."""

    def __init__(self, lake: FileRawWriter) -> None:
        self._lake = lake

    async def keys_after(self, prefix: str, start_after: str | None = None) -> list[str]:
        return [k for k in await self._lake.keys(prefix) if start_after is None or k > start_after]

    async def delete(self, keys: list[str]) -> None:
        return None


WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]


def record(i: int) -> dict[str, object]:
    text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(28))
    post: dict[str, object] = {"userId": 1 + i % 10, "id": i + 1, "title": text[:60], "body": text}
    if i % 100 == 7:
        post["userId"] = "n/a"  # invalid: quarantined
    return post


async def generate(root: Path, records: int) -> list[str]:
    """`records` envelopes (1% invalid, 1% repeated in a later object) as raw objects."""
    writer = FileRawWriter(root)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    per = records // OBJECTS
    keys = []
    for n in range(OBJECTS):
        at = start + timedelta(minutes=15 * n)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        ids = list(range(n * per, (n + 1) * per))
        if n:
            ids[: per // 100] = range(n * per - per // 100, n * per)  # the previous object's last
        lines = [encode_envelope("posts", str(i + 1), "api", stamp, record(i)) for i in ids]
        key = object_key(Zone.RAW, "posts", at, "api", f"b{n:04d}")
        await writer.put(RawObject(key, encode_ndjson_gz(lines), len(lines), "", ""))
        keys.append(key)
    return keys


def run_ours(spark: object, lake_root: Path, work: Path) -> dict[str, float]:
    lake = FileRawWriter(lake_root)
    job = CurateJob(
        spark,  # type: ignore[arg-type]
        lake,
        MemoryBookmarkStore(),
        MemoryCatalog(),
        lambda _dataset, run_id: LocalStaging(work / run_id, lake),
        SystemClock(),
        "s3://bench",
        index=FileIndex(lake),
        claims=MemoryClaimStore(),
    )
    started = time.perf_counter()
    result = asyncio.run(job.run(REGISTRY["posts"]))
    return {
        "seconds": time.perf_counter() - started,
        "rows": result.curated,
        "quarantined": result.quarantined,
        "duplicates": result.duplicates,
    }


def run_bare(spark: object, files: list[str], out: Path) -> dict[str, float]:
    started = time.perf_counter()
    df = spark.read.json(files)  # type: ignore[attr-defined]
    df.write.parquet(str(out), mode="overwrite", compression="snappy")
    seconds = time.perf_counter() - started
    rows = spark.read.parquet(str(out)).count()  # type: ignore[attr-defined]
    return {"seconds": seconds, "rows": rows}


def run_duckdb(files: list[str], out: Path) -> dict[str, float]:
    import duckdb

    db = duckdb.connect()
    listed = ", ".join(f"'{f}'" for f in files)
    started = time.perf_counter()
    db.execute(
        f"COPY (SELECT * FROM read_json([{listed}], format = 'newline_delimited')) "
        f"TO '{out}' (FORMAT parquet, COMPRESSION snappy)"
    )
    seconds = time.perf_counter() - started
    rows = db.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()
    db.close()
    return {"seconds": seconds, "rows": rows[0] if rows else 0}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "curate.json")
    args = parser.parse_args()
    spark = local_session(shuffle_partitions=8)
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "ours": [], "duckdb": []}
    with tempfile.TemporaryDirectory(
        dir=ROOT / ".local" if (ROOT / ".local").exists() else None
    ) as tmp:
        root = Path(tmp)
        keys = asyncio.run(generate(root / "lake", args.records))
        files = [str(root / "lake" / k) for k in keys]
        size = sum(os.path.getsize(f) for f in files)
        print(
            f"generated {args.records:,} records in {len(files)} objects ({size / 1e6:.0f} MB gz)"
        )
        # Warm-up on a small copy (JIT, Python workers), not measured: every measured round then
        # finds the JVM in the same state.
        warm = asyncio.run(generate(root / "warm", 20_000))
        run_bare(spark, [str(root / "warm" / k) for k in warm], root / "warm-bare")
        run_ours(spark, root / "warm", root / "warm-work")
        for n in range(args.rounds):  # interleaved
            runs["bare"].append(run_bare(spark, files, root / f"bare{n}"))
            lake = root / f"lake{n}"
            shutil.copytree(root / "lake", lake)
            runs["ours"].append(run_ours(spark, lake, root / f"work{n}"))
            runs["duckdb"].append(run_duckdb(files, root / f"duck{n}.parquet"))
            print(
                f"round {n + 1}: "
                + ", ".join(f"{k} {v[-1]['seconds']:.1f}s" for k, v in runs.items())
            )
    spark.stop()

    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    rows_out = {k: v[-1]["rows"] for k, v in runs.items()}
    labels = {
        "bare": "bare Spark read.json → parquet",
        "ours": "tributary curate job",
        "duckdb": "DuckDB read_json → parquet",
    }
    table = [
        [
            labels[k],
            f"{rows_out[k]:,.0f}",
            f"{med[k]:.1f}",
            f"{args.records / med[k]:,.0f}",
            "1.00 (baseline)" if k == "bare" else f"{med[k] / med['bare']:.2f}",
        ]
        for k in ("bare", "ours", "duckdb")
    ]
    title = (
        f"\nCurating {args.records:,} raw records (~300 B, 1% invalid, 1% duplicate), median of "
        f"{args.rounds}; {platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}"
    )
    headers = ["job", "rows out", "seconds", "input records/s", "time × bare Spark"]
    print(render(headers, table, title=title))
    ours = runs["ours"][-1]
    print(
        f"ours: {ours['quarantined']:,.0f} quarantined, "
        f"{ours['duplicates']:,.0f} duplicates dropped"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": runs, "median_seconds": med}, indent=2))
    ratio, duck = med["ours"] / med["bare"], med["duckdb"] / med["bare"]
    save(
        Report(
            name="curate",
            setup=(
                f"{args.records:,} generated `posts` envelopes (~300 B; 1% invalid, 1% duplicated "
                f"in a later object) in {OBJECTS} gzip raw objects on local disk, Spark "
                f"`local[*]`, one session, a warm-up first, median of {args.rounds} interleaved "
                "rounds. **bare Spark** (the baseline) = `spark.read.json(files).write.parquet()` "
                "(schema inferred, no validation, no dedupe); **tributary** = the real CurateJob "
                "(stage → validate → type → map → dedupe → anti-join → Parquet → publish "
                "create-only → catalog (in memory) → bookmark); **DuckDB** = `COPY (SELECT * FROM "
                "read_json(files)) TO … (FORMAT parquet)`, the single-node reference."
            ),
            tables=[Table(title.strip(), headers, table)],
            headline=[
                [
                    "curate job",
                    f"seconds for {args.records:,} raw records → curated Parquet",
                    f"{med['ours']:.1f}",
                    f"{med['bare']:.1f} (bare Spark read.json → parquet)",
                    f"{ratio:.2f}",
                    "≤ 1.5× bare Spark",
                    met(ratio <= 1.5),
                ],
                [
                    "curate job",
                    "DuckDB doing the bare format switch (reference)",
                    f"{med['duckdb']:.1f}",
                    f"{med['bare']:.1f} (bare Spark)",
                    f"{duck:.2f}",
                    "—",
                    "—",
                ],
            ],
            notes=[
                f"Ours quarantined {ours['quarantined']:,.0f} records with reasons and dropped "
                f"{ours['duplicates']:,.0f} duplicates; the bare switch keeps everything.",
                "Where ours spends beyond the baseline: validation with the registry's own "
                "validator in Python workers (a pandas UDF), typing with from_json, and caching "
                "the typed rows for the counts, the dedupe window and the write.",
                "DuckDB converts several times faster than Spark on one node; Spark is what "
                "scales out on Glue.",
            ],
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
