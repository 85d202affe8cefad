"""Curate several datasets in a row: what the local command line and the Glue entry share."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from tributary.aws import AwsClients
from tributary.cli import EXIT_OK, EXIT_PERMANENT, EXIT_RETRY, failed
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import TributaryError
from tributary.metrics import EmfMetrics
from tributary.s3_writer import S3RawWriter
from tributary_curate.bookmark import S3BookmarkStore
from tributary_curate.catalog import GlueCatalog
from tributary_curate.claim import DatasetBusyError, S3ClaimStore
from tributary_curate.compat import conditional_writes
from tributary_curate.index import S3LakeIndex
from tributary_curate.job import CurateJob
from tributary_curate.outcome import CurateResult
from tributary_curate.quality import QualityBlockedError
from tributary_curate.settings import CurateSettings, StagingMode
from tributary_curate.snapshots import SnapshotJob
from tributary_curate.staging import LocalStaging, S3Staging, Staging

# Another run holds the dataset: this one did nothing (not a failure; run again later).
EXIT_BUSY = 3
_SEVERITY = {EXIT_OK: 0, EXIT_BUSY: 1, EXIT_RETRY: 2, EXIT_PERMANENT: 3}


def worst(codes: Sequence[int]) -> int:
    """The exit code for several datasets: 2 over 1 over 3 (busy) over 0."""
    return max(codes, key=_SEVERITY.__getitem__, default=EXIT_OK)


@dataclass(frozen=True, slots=True)
class Lake:
    """The stores one curate process uses, on the lake bucket and the Glue catalog."""

    writer: S3RawWriter
    index: S3LakeIndex
    bookmarks: S3BookmarkStore
    claims: S3ClaimStore
    catalog: GlueCatalog

    @classmethod
    async def open(cls, clients: AwsClients, settings: CurateSettings) -> Lake:
        """The real stores."""
        s3, bucket = await clients.s3(), settings.lake_bucket
        conditional_writes(s3)  # Glue 5.0's botocore predates If-None-Match / If-Match
        return cls(
            S3RawWriter(s3, bucket),
            S3LakeIndex(s3, bucket),
            S3BookmarkStore(s3, bucket),
            S3ClaimStore(s3, bucket),
            GlueCatalog(await clients.glue(), settings.glue_database),
        )


def staging_factory(
    settings: CurateSettings, lake: Lake, work: Path, *, on_glue: bool
) -> Callable[[str, str], Staging]:
    """(dataset, run id) → the run's staging: S3 on Glue (Spark reads and writes s3://) and
    with CURATE_STAGING=s3 (Spark local, through a folder under `work`), else a local folder."""

    def staging(dataset: str, run_id: str) -> Staging:
        if on_glue:
            return S3Staging(settings.lake_bucket, dataset, run_id, lake.writer, lake.index)
        if settings.staging is StagingMode.S3:
            local = work / dataset / run_id
            return S3Staging(settings.lake_bucket, dataset, run_id, lake.writer, lake.index, local)
        return LocalStaging(work / dataset / run_id, lake.writer)

    return staging


async def curate_datasets(
    spark: SparkSession | Callable[[], SparkSession],
    settings: CurateSettings,
    registry: DatasetRegistry,
    names: Sequence[str],
    lake: Lake,
    staging_for: Callable[[str, str], Staging],
    stopping: Callable[[], bool] = lambda: False,
) -> tuple[list[CurateResult], int]:
    """Run the job for each dataset; results and the exit code a scheduler can act on (0 ok,
    1 transient, 2 needs a person, 3 another run held a dataset). A failure in one dataset
    (a `TributaryError`, or a Spark failure at run time), or one busy with another run, does not
    stop the others; any other exception (a programming fault) ends the whole run.
    `stopping()` is True once a stop was requested: a Spark failure then is the stop's
    cancellation, not the dataset's, and stops them all."""
    results, codes = [], [EXIT_OK]
    blocked: set[str] = set()  # datasets a quality rule blocked this run
    # The quality results as EMF, on stderr: stdout carries the results table a person reads.
    metrics = EmfMetrics(settings.metrics_namespace, "curate", sys.stderr)
    for name in names:
        job = CurateJob(
            spark,
            lake.writer,
            lake.bookmarks,
            lake.catalog,
            staging_for,
            SystemClock(),
            f"s3://{settings.lake_bucket}",
            index=lake.index,
            claims=lake.claims,
            claim_ttl_s=settings.claim_ttl_s,
            late_hours=settings.late_hours,
            crawler_name=settings.crawler_for,
            progress=lambda text: print(text, file=sys.stderr, flush=True),
            stopping=stopping,
            metrics=metrics,
        )
        try:
            results.append(await job.run(registry[name]))
        except DatasetBusyError as exc:
            print(f"{name}: skipped: {exc}", file=sys.stderr, flush=True)
            codes.append(EXIT_BUSY)
        except TributaryError as exc:
            if isinstance(exc, QualityBlockedError):
                blocked.add(name)
            codes.append(failed(name, exc))
        finally:
            metrics.flush()
    codes += await publish_snapshots(
        spark, settings, registry, names, lake, staging_for, results, stopping, blocked
    )
    return results, worst(codes)


async def publish_snapshots(
    spark: SparkSession | Callable[[], SparkSession],
    settings: CurateSettings,
    registry: DatasetRegistry,
    names: Sequence[str],
    lake: Lake,
    staging_for: Callable[[str, str], Staging],
    results: list[CurateResult],
    stopping: Callable[[], bool] = lambda: False,
    blocked: Collection[str] = (),
) -> list[int]:
    """After the datasets: each snapshot table (current state, derived) with an input among
    `names`, recomputed when an input changed (`SnapshotJob`); their exit codes. A table with
    an input in `blocked` (a quality rule blocked its run) is left as readers see it: nothing
    is recomputed around a block."""
    codes = []
    for table in registry.tables():
        if not table.snapshot or not set(table.inputs) & set(names):
            continue
        if set(table.inputs) & set(blocked):
            print(
                f"{table.name}: not recomputed: an input's quality rule blocked its run",
                file=sys.stderr,
                flush=True,
            )
            continue
        job = SnapshotJob(
            spark,
            lake.writer,
            lake.index,
            lake.bookmarks,
            lake.catalog,
            lake.claims,
            staging_for,
            SystemClock(),
            f"s3://{settings.lake_bucket}",
            claim_ttl_s=settings.claim_ttl_s,
            retain_s=settings.snapshot_retain_s,
            progress=lambda text: print(text, file=sys.stderr, flush=True),
            stopping=stopping,
        )
        try:
            results.append(await job.run(registry, table))
        except DatasetBusyError as exc:
            print(f"{table.name}: skipped: {exc}", file=sys.stderr, flush=True)
            codes.append(EXIT_BUSY)
        except TributaryError as exc:
            codes.append(failed(table.name, exc))
    return codes
