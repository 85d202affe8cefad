"""`python -m tributary_curate`: the curate job's local runner, a DuckDB query over the curated
zone, and the bookmarks.

  run [--dataset X]… [--loop --interval N]   curate what is new in raw (Spark local[*])
  query "select count(*) from posts"         DuckDB over curated/ (synced to a local cache)
  bookmark show|reset [--dataset X]…          what curate remembers per dataset

Exit codes: 0 done; 1 a transient failure (run again later); 2 needs a person (a dataset's
config or transform failed: the others still ran); 3 another curate run holds a dataset (this
run did nothing for it; run again when that one has finished). SIGTERM/SIGINT stop a run in
seconds (Spark's jobs cancelled, the dataset's claim released): exit 1, or 0 under --loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson

from tributary.aws import AwsClients
from tributary.cli import EXIT_OK, EXIT_RETRY, every, run_and_exit
from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError
from tributary.log import configure_logging
from tributary.s3_writer import S3RawWriter
from tributary.table import render
from tributary_curate.bookmark import S3BookmarkStore, bookmark_key
from tributary_curate.outcome import CurateResult
from tributary_curate.query import run_query, snapshot_locations, sync_curated
from tributary_curate.runner import Lake, curate_datasets, staging_factory
from tributary_curate.settings import CurateSettings

# After a stop, how long the Spark calls still running get to end before the session stops.
SETTLE_S = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tributary_curate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="curate what is new in raw")
    run.add_argument("--dataset", action="append", help="only this dataset (repeatable)")
    run.add_argument("--loop", action="store_true", help="run every --interval seconds")
    run.add_argument("--interval", type=float, help="seconds between loop runs")
    query = sub.add_parser("query", help="SQL over the curated zone (DuckDB)")
    query.add_argument("sql")
    query.add_argument("--no-sync", action="store_true", help="use the cache as it is")
    bookmark = sub.add_parser("bookmark", help="show or reset curate bookmarks")
    bookmark.add_argument("action", choices=["show", "reset"])
    bookmark.add_argument("--dataset", action="append")
    return parser


def results_table(results: Sequence[CurateResult]) -> str:
    """The run summary a person reads."""
    rows = [
        [
            r.dataset,
            r.run,
            r.raw_objects,
            r.lines,
            r.curated,
            r.duplicates,
            r.filtered,
            r.quarantined,
            r.files,
            len(r.partitions),
            f"{r.seconds:.1f}",
        ]
        for r in results
    ]
    headers = [
        "dataset",
        "run",
        "raw objects",
        "lines",
        "curated",
        "duplicates",
        "filtered",
        "quarantined",
        "files",
        "partitions",
        "seconds",
    ]
    return render(headers, rows)


async def _main(args: argparse.Namespace, settings: CurateSettings) -> int:
    registry = DatasetRegistry.from_file(settings.datasets_config)
    names: list[str] = getattr(args, "dataset", None) or list(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise PermanentError(f"unknown dataset(s) {unknown}; known: {sorted(registry)}")
    async with AwsClients(settings) as clients:
        s3 = await clients.s3()
        lake = S3RawWriter(s3, settings.lake_bucket)
        bookmarks = S3BookmarkStore(s3, settings.lake_bucket)
        if args.command == "query":
            if not args.no_sync:
                tables = [t.name for t in registry.tables() if t.snapshot]
                snapshots = await snapshot_locations(bookmarks, tables)
                await sync_curated(lake, settings.query_cache, snapshots)
            columns, rows = run_query(settings.query_cache, args.sql)
            print(render(columns, rows))
            return EXIT_OK
        if args.command == "bookmark":
            for name in names:
                if args.action == "reset":
                    await s3.delete_object(Bucket=settings.lake_bucket, Key=bookmark_key(name))
                    print(f"{name}: bookmark reset; the next run re-reads all of raw/{name}/")
                    continue
                mark = await bookmarks.get(name)
                doc = {**mark.document(), "processed": len(mark.processed)}
                print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
            return EXIT_OK
        from tributary_curate.spark import LazySession  # a JVM only when there is work

        spark = LazySession()
        stores = await Lake.open(clients, settings)
        settings.work_dir.mkdir(parents=True, exist_ok=True)

        async def once() -> int:
            with tempfile.TemporaryDirectory(dir=settings.work_dir) as tmp:
                staging = staging_factory(settings, stores, Path(tmp), on_glue=False)
                results, code = await curate_datasets(
                    spark, settings, registry, names, stores, staging, lambda: stop.requested
                )
            print(results_table(results), flush=True)
            return code

        from tributary_curate.spark_thread import settle_spark_threads
        from tributary_curate.stopping import STOPPED, SparkStopper

        stop = SparkStopper(spark).install()
        try:
            if not args.loop:
                return await once()
            return await every(args.interval or settings.interval_s, once, signals=False)
        except STOPPED:
            if not stop.requested:
                raise
            # The Spark error may come first: take the task's pending cancellation here, not
            # in the clean-up below.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
            print(
                "curate: stopped; Spark's jobs cancelled (the next run redoes what this one "
                "did not finish, without duplicates)",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_OK if args.loop else EXIT_RETRY
        finally:
            # Cancelled calls end in a moment once their jobs are (kept being) cancelled; one
            # parked inside Spark for good is left behind after that (see spark_thread.py).
            with contextlib.suppress(asyncio.CancelledError):
                if stop.requested and not await settle_spark_threads(SETTLE_S):
                    print(
                        "curate: a Spark call did not end with its cancelled job; exiting "
                        "without it",
                        file=sys.stderr,
                        flush=True,
                    )
            stop.close()
            spark.stop()


def main() -> None:
    """Entry point."""
    args = _parser().parse_args()
    settings = CurateSettings()
    configure_logging("curate", settings.log_level)
    run_and_exit(_main(args, settings))


if __name__ == "__main__":
    main()
