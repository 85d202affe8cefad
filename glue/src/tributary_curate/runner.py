"""Curate several datasets in a row: what the local command line and the Glue entry share."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from pyspark.sql import SparkSession

from tributary.cli import EXIT_OK, failed
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import TributaryError
from tributary.raw_writer import RawWriter
from tributary_curate.bookmark import BookmarkStore
from tributary_curate.catalog import Catalog
from tributary_curate.job import CurateJob, CurateResult, Staging
from tributary_curate.settings import CurateSettings


async def curate_datasets(
    spark: SparkSession,
    settings: CurateSettings,
    registry: DatasetRegistry,
    names: Sequence[str],
    lake: RawWriter,
    bookmarks: BookmarkStore,
    catalog: Catalog,
    staging_for: Callable[[str], Staging],
) -> tuple[list[CurateResult], int]:
    """Run the job for each dataset; results and the exit code a scheduler can act on (0 ok,
    1 transient, 2 needs a person). A `TributaryError` in one dataset does not stop the others;
    any other exception (a Spark or programming fault) ends the whole run."""
    results, worst = [], EXIT_OK
    for name in names:
        job = CurateJob(
            spark,
            lake,
            bookmarks,
            catalog,
            staging_for(name),
            SystemClock(),
            f"s3://{settings.lake_bucket}",
            crawler_name=settings.crawler_for,
            progress=lambda text: print(text, file=sys.stderr, flush=True),
        )
        try:
            results.append(await job.run(registry[name]))
        except TributaryError as exc:
            worst = max(worst, failed(name, exc))
    return results, worst
