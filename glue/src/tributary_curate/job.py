"""One curate run of one dataset: claim → bookmark → new raw objects → Spark → publish → catalog
→ bookmark → release.

The same code runs on Glue (inputs and outputs on S3) and locally (files staged to a temporary
folder or to S3, Spark local[*]); a `Staging` hides the difference.

One run per dataset at a time: the run claims the dataset before any work (`claim`) and a second
run stops at once, having written nothing. Each run stages under a place of its own (its run
id) and publishes only the outputs it wrote itself.

Crash safety: output files are published create-only under names derived from the run number
and the file's content, and the bookmark moves last. A rerun after a crash anywhere sees the
same new raw objects, and its anti-join against the curated partitions drops the rows an
interrupted attempt already published: every valid record ends up curated exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException, PythonException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tributary.batch import decode_ndjson_gz
from tributary.clock import Clock, iso_utc
from tributary.dataset import Dataset
from tributary.layout import Zone
from tributary.metrics import Metrics
from tributary.raw_writer import RawObject, RawWriter
from tributary_curate.bookmark import BookmarkConflictError, BookmarkStore
from tributary_curate.catalog import Catalog, TableShape
from tributary_curate.claim import DEFAULT_TTL_S, ClaimStore, HeldClaim, holding
from tributary_curate.failures import CurateConfigError, spark_failure
from tributary_curate.index import LakeIndex
from tributary_curate.outcome import (
    CurateResult,
    Prepared,
    Written,
    publish_quarantine,
    quarantine_objects,
)
from tributary_curate.quality import QualityBlockedError, QualityReport, evaluate, unique_columns
from tributary_curate.relationalize import child_tables, write_children
from tributary_curate.shape import mapped_rows, raw_lines, written_columns
from tributary_curate.spark_thread import in_spark_thread
from tributary_curate.staging import Staging
from tributary_curate.transform import (
    ID,
    PARTITION_COLUMNS,
    PROBLEM,
    VALUE,
    apply_filter,
    first_arrivals,
    not_yet_curated,
)
from tributary_curate.window import (
    DEFAULT_LATE_HOURS,
    advance,
    future_keys,
    hour_of,
    list_new,
)

log = logging.getLogger(__name__)

PARQUET_SUFFIX = ".snappy.parquet"
ROWS_PER_FILE = 500_000
CURATED_OUTPUT, QUARANTINE_OUTPUT = "curated", "quarantine"


Step = Callable[[str], Awaitable[None]]


async def _no_step(name: str) -> None:
    return None


def new_run_id(clock: Clock) -> str:
    """A run id of its own for every attempt (it names the run's claim and staging)."""
    return f"{clock.now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class CurateJob:
    """Promotes a dataset's new raw objects to curated Parquet (see the module docstring)."""

    def __init__(
        self,
        spark: SparkSession | Callable[[], SparkSession],
        lake: RawWriter,
        bookmarks: BookmarkStore,
        catalog: Catalog,
        staging_for: Callable[[str, str], Staging],
        clock: Clock,
        lake_url: str,
        *,
        index: LakeIndex,
        claims: ClaimStore,
        claim_ttl_s: float = DEFAULT_TTL_S,
        late_hours: int = DEFAULT_LATE_HOURS,
        crawler_name: Callable[[str], str | None] = lambda _: None,
        step: Step = _no_step,
        progress: Callable[[str], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
        metrics: Metrics | None = None,
        spark_rules: bool = False,
    ) -> None:
        self._spark_of = spark  # a session, or a callable starting one on first use
        self._lake = lake
        self._bookmarks = bookmarks
        self._catalog = catalog
        self._staging_for = staging_for  # (dataset, run id) → the run's own staging
        self._clock = clock
        self._lake_url = lake_url.rstrip("/")  # s3://<bucket>, for catalog locations
        self._index = index
        self._claims = claims
        self._claim_ttl_s = claim_ttl_s
        self._late_hours = late_hours
        self._crawler_name = crawler_name
        self._step = step  # fault injection in tests: raise at a named step
        self._progress = progress or (lambda _: None)
        self._stopping = stopping  # True once a stop was requested (SparkStopper.requested)
        self._metrics = metrics  # EMF: the quality rules' results
        self._spark_rules = spark_rules  # validate with spark_rules (measured slower: off)

    async def run(self, dataset: Dataset) -> CurateResult:
        """Curate what is new in `raw/<dataset>/` since the bookmark. Raises `DatasetBusyError`
        (nothing done) while another run holds the dataset, `CurateConfigError` when its
        config or transform fails (recorded in the bookmark's `last_error`)."""
        run_id = new_run_id(self._clock)
        async with holding(
            self._claims, dataset.name, run_id, self._clock, self._claim_ttl_s
        ) as held:
            try:
                return await self._run_claimed(dataset, held)
            except (CurateConfigError, QualityBlockedError) as exc:
                await self._record_failure(dataset.name, run_id, exc)
                raise
            except asyncio.CancelledError:
                started = getattr(self._spark_of, "started", True)  # a session: started
                if started:
                    self._spark.sparkContext.cancelAllJobs()  # the Spark thread's job stops too
                raise

    @property
    def _spark(self) -> SparkSession:
        if isinstance(self._spark_of, SparkSession):
            return self._spark_of
        return self._spark_of()

    async def _run_claimed(self, dataset: Dataset, held: HeldClaim) -> CurateResult:
        started = time.perf_counter()
        bookmark = await self._bookmarks.get(dataset.name)
        run = bookmark.runs + 1
        listing = await list_new(self._index, bookmark)
        listed_at = self._clock.now()
        ahead = future_keys(listing, listed_at)
        if ahead:  # curated, but they do not move the watermark (window.py)
            log.warning(
                "raw keys in a future hour",
                extra={"dataset": dataset.name, "count": len(ahead), "keys": list(ahead[:10])},
            )
            self._progress(f"{dataset.name}: {len(ahead)} raw objects in a future hour")
        if not listing.new:
            self._progress(f"{dataset.name}: nothing new")
            return CurateResult(dataset.name, bookmark.runs)
        self._progress(f"{dataset.name}: run {run}, {len(listing.new)} new raw objects; staging")
        staging = self._staging_for(dataset.name, held.run_id)
        try:
            paths = await staging.inputs(list(listing.new))
            now = self._clock.now()
            result = await self._transform_and_write(
                dataset, paths, staging, hour_of(listing.new[0])
            )
            await self._step("after_write")
            await held.renew()  # a full ttl ahead before publishing
            published = await self._publish(dataset, run, now, staging, result.outputs, held)
            await self._step("after_publish")
        finally:
            await staging.cleanup()
        catalog = await self._update_catalog(dataset, result.partitions, result.columns)
        for child in result.children:  # relationalize: the child tables' catalog entries
            await self._update_catalog(dataset, child.partitions, child.columns, child.table)
        await self._step("after_catalog")
        outcome = CurateResult(
            dataset.name,
            run,
            raw_objects=len(listing.new),
            lines=result.lines,
            quarantined=result.quarantined,
            filtered=result.filtered,
            duplicates=result.duplicates,
            curated=result.curated,
            files=published,
            partitions=result.partitions,
            catalog=catalog,
            seconds=time.perf_counter() - started,
            children={c.table: c.curated for c in result.children},
            quality=result.quality,
        )
        since, processed = advance(bookmark, listing, self._late_hours, listed_at)
        last_run = {
            "finished_at": iso_utc(self._clock.now()),
            "run_id": held.run_id,
            "staging": staging.uri,
            **outcome.summary(),
            **({"future_keys": list(ahead[:10])} if ahead else {}),
        }
        held.check()
        await self._bookmarks.put(
            replace(
                bookmark,
                runs=run,
                processed=processed,
                since=since,
                last_run=last_run,
                last_error={},
            )
        )
        await self._step("after_bookmark")
        log.info("curate run finished", extra={"dataset": dataset.name, **outcome.summary()})
        return outcome

    async def _record_failure(self, name: str, run_id: str, exc: Exception) -> None:
        """Remember the failure in the bookmark (for `make status`); nothing else moves."""
        bookmark = await self._bookmarks.get(name)
        error: dict[str, Any] = {
            "at": iso_utc(self._clock.now()),
            "run_id": run_id,
            "reason": str(exc),
        }
        if isinstance(exc, QualityBlockedError):  # the verdict `make status` shows
            error["quality"] = exc.report.documents()
            if exc.oldest is not None:  # raw expires RawRetentionDays after it lands
                error["oldest_raw"] = exc.oldest
        elif bookmark.last_error.get("quality"):
            # Blocked before and failed otherwise now: nothing has published since, so the
            # block still stands; keep its verdict (and when it was given) for `make status`.
            kept = ("quality", "oldest_raw")
            error.update({k: bookmark.last_error[k] for k in kept if k in bookmark.last_error})
            error["quality_at"] = bookmark.last_error.get("quality_at", bookmark.last_error["at"])
        with contextlib.suppress(BookmarkConflictError):
            await self._bookmarks.put(replace(bookmark, last_error=error))

    # ---- Spark ---------------------------------------------------------------------------------

    async def _transform_and_write(
        self, dataset: Dataset, paths: list[str], staging: Staging, oldest: str | None = None
    ) -> Written:
        """Spark in daemon threads (its calls block; see spark_thread.py); config and transform
        failures become `CurateConfigError`. `oldest`: the hour of the oldest raw object read
        (for a block)."""
        try:
            prepared = await in_spark_thread(self._prepare, dataset, paths)
            existing = await self._existing_ids(dataset, prepared.touched, staging)
            quality = await self._check_quality(dataset, prepared, staging, oldest)
            kids = {  # relationalize: each child table's own anti-join
                t: await self._existing_ids(replace(dataset, name=t), prepared.touched, staging)
                for t in child_tables(dataset)
            }
            written = await in_spark_thread(self._write, dataset, prepared, existing, staging, kids)
            written = replace(written, quality=tuple(quality.documents()))
        except (ValueError, AnalysisException, PythonException, Py4JJavaError) as exc:
            if self._stopping():  # a stop cancelled Spark's jobs: not this dataset's fault
                raise
            raise spark_failure(dataset.name, exc) from exc
        for name in written.outputs:
            await staging.commit(name)
        return written

    def _prepare(self, dataset: Dataset, paths: list[str]) -> Prepared:
        spark, curated = self._spark, dataset.curated
        rows = mapped_rows(raw_lines(spark, paths), dataset, spark_rules=self._spark_rules)
        # A problem line carries the raw line in it: the raw text is not needed past here.
        rows = rows.drop(VALUE).persist()
        ok = F.col(PROBLEM).isNull()
        kept = apply_filter(rows.where(ok), curated.filter)
        self._progress(f"{dataset.name}: checking {len(paths)} raw objects")
        passes = F.coalesce(F.expr(curated.filter or "true"), F.lit(False))
        counts = rows.agg(
            F.count(F.lit(1)).alias("lines"),
            F.count_if(ok).alias("valid"),
            F.count_if(ok & passes).alias("kept"),
        ).first()
        assert counts is not None  # an aggregate always has one row
        lines_n, valid_n, kept_n = (int(counts[n]) for n in ("lines", "valid", "kept"))
        first = first_arrivals(kept).persist()
        touched = sorted(tuple(r) for r in first.select(*PARTITION_COLUMNS).distinct().collect())
        return Prepared(rows, first, touched, lines_n, valid_n, kept_n)

    def _write(
        self,
        dataset: Dataset,
        prepared: Prepared,
        existing: DataFrame | None,
        staging: Staging,
        existing_children: dict[str, DataFrame | None] | None = None,
    ) -> Written:
        rows, first, touched = prepared.rows, prepared.first, prepared.touched
        ok = F.col(PROBLEM).isNull()
        fresh = not_yet_curated(first, existing)
        curated_n = fresh.count() if existing is not None else first.count()
        # Every touched partition holds curated rows now or after this write; all are (re)declared
        # to the catalog, so a rerun after a crash before the catalog step still registers them.
        partitions = touched
        self._progress(f"{dataset.name}: writing {curated_n} rows, {len(partitions)} partitions")
        out = written_columns(fresh, dataset)
        outputs: list[str] = []
        if curated_n:
            # No second shuffle: fewer tasks (≈ ROWS_PER_FILE rows each) each write one file
            # per day they hold, instead of every shuffle partition writing a small one.
            tasks = max(1, -(-curated_n // ROWS_PER_FILE))
            out.coalesce(tasks).write.partitionBy(*PARTITION_COLUMNS).parquet(
                staging.output(CURATED_OUTPUT), mode="overwrite", compression="snappy"
            )
            outputs.append(CURATED_OUTPUT)
        quarantined_n = prepared.lines - prepared.valid
        if quarantined_n:
            rows.where(~ok).select(PROBLEM).coalesce(1).write.mode("overwrite").text(
                staging.output(QUARANTINE_OUTPUT), compression="gzip"
            )
            outputs.append(QUARANTINE_OUTPUT)
        columns = tuple(
            (f.name, f.dataType.simpleString())
            for f in out.schema.fields
            if f.name not in PARTITION_COLUMNS
        )
        children = write_children(first, fresh, dataset, existing_children or {}, staging.output)
        outputs += [c.table for c in children if c.curated]
        for df in (rows, first):
            df.unpersist()
        return Written(
            lines=prepared.lines,
            quarantined=quarantined_n,
            filtered=prepared.valid - prepared.kept,
            duplicates=prepared.kept - curated_n,
            curated=curated_n,
            partitions=tuple(partitions),
            columns=columns,
            outputs=tuple(outputs),
            children=children,
        )

    async def _check_quality(
        self, dataset: Dataset, prepared: Prepared, staging: Staging, oldest: str | None
    ) -> QualityReport:
        """The dataset's quality rules on the run's rows (`IsUnique` over the whole curated
        table); raises `QualityBlockedError` before anything is written when a `block` rule
        fails (tributary_curate.quality)."""
        if not dataset.quality:
            return QualityReport()
        columns, curated = unique_columns(dataset.quality), None
        if columns:
            keys = await self._lake.keys(f"{Zone.CURATED}/{dataset.name}/")
            paths = await staging.inputs([k for k in keys if k.endswith(PARQUET_SUFFIX)])
            if paths:
                curated = await in_spark_thread(
                    lambda: self._spark.read.parquet(*paths).select(ID, *columns)
                )
        now, passed = self._clock.now(), False
        try:
            report = await in_spark_thread(
                evaluate, dataset.name, dataset.quality, prepared.first, now, curated
            )
            if self._metrics is not None:
                report.record(self._metrics, dataset.name)
            if report.blocking:
                raise QualityBlockedError(dataset.name, report, oldest)
            passed = True
        finally:
            if not passed:  # nothing will be written: free the run's cached rows
                for df in (prepared.rows, prepared.first):
                    df.unpersist()
        self._progress(f"{dataset.name}: quality {len(report.results)} rules checked")
        return report

    async def _existing_ids(
        self, dataset: Dataset, touched: list[tuple[str, ...]], staging: Staging
    ) -> DataFrame | None:
        """The ids already curated in the touched partitions and the look-back days before."""
        days: set[datetime] = set()
        for y, m, d in touched:
            day = datetime(int(y), int(m), int(d), tzinfo=UTC)
            for back in range(dataset.curated.dedupe_lookback_days + 1):
                days.add(day - timedelta(days=back))
        keys: list[str] = []
        for day in sorted(days):
            prefix = f"{Zone.CURATED}/{dataset.name}/year={day:%Y}/month={day:%m}/day={day:%d}/"
            keys += [k for k in await self._lake.keys(prefix) if k.endswith(PARQUET_SUFFIX)]
        if not keys:
            return None
        paths = await staging.inputs(keys)
        # Off the event loop: the read lists and samples files (and may start the session).
        return await in_spark_thread(lambda: self._spark.read.parquet(*paths).select(ID))

    # ---- publish, catalog ---------------------------------------------------------------------

    async def _publish(
        self,
        dataset: Dataset,
        run: int,
        now: datetime,
        staging: Staging,
        outputs: tuple[str, ...],
        held: HeldClaim,
    ) -> int:
        """Upload what this run's Spark wrote (only `outputs`), create-only, under
        content-derived names; each object only while the claim is surely still ours, its
        request bounded (`HeldClaim.publishing`)."""
        published = 0
        # Child tables first: a crash before the parent's files leaves a rerun that finds the
        # parents fresh again, and their children's anti-join drops what landed.
        for table in [*(t for t in child_tables(dataset) if t in outputs), dataset.name]:
            output = CURATED_OUTPUT if table == dataset.name else table
            if output in outputs:
                published += await self._publish_parquet(table, output, run, staging, held)
        files = await staging.outputs(QUARANTINE_OUTPUT) if QUARANTINE_OUTPUT in outputs else []
        problems = [line for _relative, body in files if body for line in decode_ndjson_gz(body)]
        for key, lines in quarantine_objects(dataset.name, problems, now).items():
            await publish_quarantine(self._lake, key, lines, run, held.publishing)
        return published

    async def _publish_parquet(
        self, table: str, output: str, run: int, staging: Staging, held: HeldClaim
    ) -> int:
        """Upload staging `output`'s Parquet files to `curated/<table>/`; how many."""
        published = 0
        for relative, body in await staging.outputs(output):
            if not relative.endswith(".parquet"):
                continue
            folder = relative.rsplit("/", 1)[0]  # year=…/month=…/day=…
            digest = hashlib.sha256(body).hexdigest()[:16]
            key = f"{Zone.CURATED}/{table}/{folder}/r{run:06d}-{digest}{PARQUET_SUFFIX}"
            obj = RawObject(
                key,
                body,
                pq.read_metadata(pa.BufferReader(body)).num_rows,  # rows, like raw's records
                f"run {run}",
                f"run {run}",
                {"writer": "curate"},
                content_type="application/vnd.apache.parquet",
                content_encoding="identity",
            )
            await held.publishing(self._lake.put(obj))
            published += 1
        return published

    async def _update_catalog(
        self,
        dataset: Dataset,
        partitions: tuple[tuple[str, ...], ...],
        columns: tuple[tuple[str, str], ...],
        name: str | None = None,  # a child table of the dataset (relationalize)
    ) -> dict[str, Any]:
        spec, done, name = dataset.curated.catalog, dict[str, Any](), name or dataset.name
        if not partitions:
            return {}
        location = f"{self._lake_url}/{Zone.CURATED}/{name}/"
        table = TableShape(name, columns, PARTITION_COLUMNS, location)
        if spec.table:
            await self._catalog.ensure_table(table)
            done["table"] = table.name
        if spec.partitions:
            done["partitions_added"] = await self._catalog.add_partitions(table, list(partitions))
        crawler = self._crawler_name(name)
        if spec.crawler and crawler:
            done["crawler"] = await self._catalog.start_crawler(crawler)
        return done
