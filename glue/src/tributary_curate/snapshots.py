"""Tables published as whole snapshots: `<dataset>_current` and the registry's `derived:` tables.

Such a table must be rewritten when an input changes (a user renamed after their posts were
curated), and no reader may ever see it half-written. So each version is a new, immutable
snapshot and readers switch to it in one step:

1. the run claims the table (as curate claims a dataset) and reads its pointer, the table's
   bookmark at `_state/curate/<table>/bookmark.json` (`last_run.snapshot`);
2. it is stale when an input dataset's curate run (count and run id) differs from the one
   recorded: only then is it recomputed (Spark, from every curated file of its inputs; it
   waits while its base or an inner join's side has none, see `snapshot_inputs`);
3. the files go to `curated/<table>/<snapshot id>/` (create-only; nothing points at them yet);
4. the pointer is replaced (`If-Match`): DuckDB (`make query`) reads the snapshot it names;
5. the Glue table's location and columns change in one `UpdateTable`: Athena switches;
   Once it succeeded the pointer records it (`last_run.catalog`: the snapshot Glue names, the
   one it named before and when it switched): the pointer and Glue are two steps, and may
   disagree until a run re-points Glue;
6. snapshots superseded more than `retain_s` ago and folders no pointer names (a crashed
   run's) are deleted, but never the last two snapshots a reader may name: the pointer's and
   the one it replaced (DuckDB), and the one Glue names and the one it named before (Athena;
   kept even when Glue has failed to switch for many runs).

A crash before 4 leaves an unreferenced folder (deleted by the next run); between 4 and 5 the
next run finds the table up to date and only re-points Glue (step 5 runs every time). A failure
at any step is recorded in the pointer's `last_error` (`make status` shows it). A snapshot
records a digest of its definition (the table's spec, its inputs' curated mapping and schema,
`DEFINITION_VERSION`): a changed definition makes it stale as a changed input does.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException, PythonException
from pyspark.sql import SparkSession

from tributary.clock import Clock, iso_utc
from tributary.dataset import DatasetRegistry
from tributary.derived import Table, TableKind
from tributary.errors import TributaryError
from tributary.layout import Zone
from tributary.raw_writer import RawObject, RawWriter
from tributary_curate.bookmark import Bookmark, BookmarkStore
from tributary_curate.catalog import Catalog, TableShape
from tributary_curate.claim import DEFAULT_TTL_S, ClaimStore, HeldClaim, holding
from tributary_curate.failures import spark_failure
from tributary_curate.index import LakeIndex
from tributary_curate.job import new_run_id
from tributary_curate.outcome import CurateResult
from tributary_curate.snapshot_inputs import required_inputs, table_rows
from tributary_curate.spark_thread import in_spark_thread
from tributary_curate.staging import Staging

log = logging.getLogger(__name__)

PARQUET_SUFFIX = ".snappy.parquet"
SNAPSHOT_OUTPUT = "snapshot"
# `curated/<table>/snapshot-<n>-<run id>/`: the only curated keys a run may delete (IAM
# grants DeleteObject on `curated/*/snapshot-*` alone; datasets are append-only).
SNAPSHOT_FOLDER = "snapshot-"
ROWS_PER_FILE = 500_000
# Bump when the code computing current-state or derived rows changes what it produces.
DEFINITION_VERSION = 1
DEFAULT_RETAIN_S = 3600.0


def curated_prefix(table: str) -> str:
    """Where a table's files live."""
    return f"{Zone.CURATED}/{table}/"


def snapshot_of(pointer: Bookmark) -> dict[str, Any] | None:
    """The snapshot a table's pointer names, or None before the first."""
    snapshot = pointer.last_run.get("snapshot")
    return snapshot if isinstance(snapshot, dict) else None


def input_version(mark: Bookmark) -> str:
    """What a snapshot records of an input: its curate run count and last run id (unique per
    run, so a reset bookmark that counts up to the same number again still differs)."""
    return f"{mark.runs}/{mark.last_run.get('run_id', '-')}"


def definition_digest(registry: DatasetRegistry, table: Table) -> str:
    """A digest of what `table`'s rows are computed from, short of the data: its spec (the
    derived entry, or the dataset's `current`), each input's curated mapping and schema, and
    `DEFINITION_VERSION`. Any change makes the published snapshot stale."""
    spec: object = (
        registry[table.inputs[0]].curated.current
        if table.kind is TableKind.CURRENT
        else registry.derived[table.name]
    )
    inputs = [(n, registry[n].curated, registry[n].schema) for n in table.inputs]
    text = repr((DEFINITION_VERSION, table, spec, inputs))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SnapshotJob:
    """Publishes one snapshot table (see the module docstring)."""

    def __init__(
        self,
        spark: SparkSession | Callable[[], SparkSession],
        lake: RawWriter,
        index: LakeIndex,
        bookmarks: BookmarkStore,
        catalog: Catalog,
        claims: ClaimStore,
        staging_for: Callable[[str, str], Staging],
        clock: Clock,
        lake_url: str,
        *,
        claim_ttl_s: float = DEFAULT_TTL_S,
        retain_s: float = DEFAULT_RETAIN_S,
        progress: Callable[[str], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._stopping = stopping  # True once a stop was requested: Spark errors are the stop's
        self._spark_of = spark
        self._lake = lake
        self._index = index
        self._bookmarks = bookmarks
        self._catalog = catalog
        self._claims = claims
        self._staging_for = staging_for
        self._clock = clock
        self._lake_url = lake_url.rstrip("/")
        self._claim_ttl_s = claim_ttl_s
        self._retain_s = retain_s
        self._progress = progress or (lambda _: None)

    @property
    def _spark(self) -> SparkSession:
        if isinstance(self._spark_of, SparkSession):
            return self._spark_of
        return self._spark_of()

    async def run(self, registry: DatasetRegistry, table: Table) -> CurateResult:
        """Recompute and publish `table` when an input changed; re-point the catalog either way.
        Raises `DatasetBusyError` while another run holds it; Spark failures as they come."""
        run_id = new_run_id(self._clock)
        started = time.perf_counter()
        async with holding(
            self._claims, table.name, run_id, self._clock, self._claim_ttl_s
        ) as held:
            try:
                return await self._run_claimed(registry, table, held, started)
            except TributaryError as exc:
                await self._record_failure(table.name, run_id, exc)
                raise

    async def _run_claimed(
        self, registry: DatasetRegistry, table: Table, held: HeldClaim, started: float
    ) -> CurateResult:
        pointer = await self._bookmarks.get(table.name)
        versions = {n: input_version(await self._bookmarks.get(n)) for n in table.inputs}
        definition = definition_digest(registry, table)
        snapshot = snapshot_of(pointer)
        fresh = (
            snapshot is not None
            and snapshot.get("inputs") == versions
            and snapshot.get("definition") == definition
        )
        if fresh:
            assert snapshot is not None
            self._progress(f"{table.name}: up to date (snapshot {snapshot['id']})")
        else:
            keys = {n: await self._parquet_keys(n) for n in table.inputs}
            waiting = [n for n in required_inputs(registry, table) if not keys[n]]
            if waiting:  # no row yet (a left join's right side with none is null columns)
                await self._record_waiting(registry, table, pointer, waiting, held)
                return CurateResult(table.name, pointer.runs)
            for name in (n for n in table.inputs if not keys[n]):  # a left join's right side
                self._progress(f"{table.name}: no curated rows of {name} yet: its columns are null")
                log.info("snapshot input has no rows", extra={"table": table.name, "input": name})
            pointer, snapshot = await self._recompute(
                registry, table, pointer, (versions, definition), keys, held
            )
        assert snapshot is not None
        catalog = await self._point_catalog(table.name, snapshot)
        pointer = await self._record_catalog(pointer, snapshot, held)
        expired = await self._expire(table.name, pointer, held)
        return self._result(table, pointer.runs, snapshot, catalog, expired, started)

    async def _record_waiting(
        self,
        registry: DatasetRegistry,
        table: Table,
        pointer: Bookmark,
        waiting: list[str],
        held: HeldClaim,
    ) -> None:
        """Say that `table` waits for the first curated rows of its base or an inner join's
        side: logged, and `last_run.waiting` in the pointer (`make status` shows it) until a
        snapshot is published."""
        how = ""
        if table.kind is TableKind.DERIVED:
            joins = {j.dataset: j.how for j in registry.derived[table.name].joins}
            how = ", ".join(f"{joins[n]} join of {n}" for n in waiting if n in joins)
        text = f"waiting for the first curated rows of {', '.join(waiting)}"
        if how:
            text += f" ({how}: no row can match before)"
        self._progress(f"{table.name}: {text}")
        log.warning("snapshot table waiting", extra={"table": table.name, "waiting": waiting})
        recorded = pointer.last_run.get("waiting") or {}
        if recorded.get("inputs") == waiting:
            return
        waits = {"inputs": waiting, "reason": text, "since": iso_utc(self._clock.now())}
        held.check()
        await self._bookmarks.put(replace(pointer, last_run={**pointer.last_run, "waiting": waits}))

    async def _record_failure(self, table: str, run_id: str, exc: TributaryError) -> None:
        """The failure in the pointer's `last_error` (the snapshot readers see is unchanged)."""
        try:
            pointer = await self._bookmarks.get(table)
            error = {"at": iso_utc(self._clock.now()), "run_id": run_id, "error": str(exc)}
            await self._bookmarks.put(replace(pointer, last_error=error))
        except TributaryError:  # the original failure is the one to report
            log.warning("could not record the failure", extra={"table": table}, exc_info=True)

    async def _record_catalog(
        self, pointer: Bookmark, snapshot: dict[str, Any], held: HeldClaim
    ) -> Bookmark:
        """After Glue names `snapshot`: record it (and what Glue named before) in the pointer."""
        recorded = dict(pointer.last_run.get("catalog") or {})
        if recorded.get("snapshot") == snapshot["id"] and not pointer.last_error:
            return pointer
        catalog = recorded
        if recorded.get("snapshot") != snapshot["id"]:
            catalog = {
                "snapshot": snapshot["id"],
                "previous": recorded.get("snapshot"),
                "switched_at": iso_utc(self._clock.now()),
            }
        held.check()
        return await self._bookmarks.put(
            replace(pointer, last_run={**pointer.last_run, "catalog": catalog}, last_error={})
        )

    async def _recompute(
        self,
        registry: DatasetRegistry,
        table: Table,
        pointer: Bookmark,
        inputs: tuple[dict[str, str], str],
        keys: dict[str, list[str]],
        held: HeldClaim,
    ) -> tuple[Bookmark, dict[str, Any]]:
        """Compute the table, upload the new snapshot, then point the pointer at it (the DuckDB
        switch); the new pointer and snapshot."""
        run_id, current = held.run_id, snapshot_of(pointer)
        versions, definition = inputs
        staging = self._staging_for(table.name, run_id)
        try:
            paths = {n: await staging.inputs(k) for n, k in keys.items()}
            try:
                written = await in_spark_thread(self._compute, registry, table, paths, staging)
            except (ValueError, AnalysisException, PythonException, Py4JJavaError) as exc:
                if self._stopping():  # a stop cancelled Spark's jobs: not this table's fault
                    raise
                raise spark_failure(table.name, exc) from exc
            await staging.commit(SNAPSHOT_OUTPUT)
            snapshot_id = f"{SNAPSHOT_FOLDER}{pointer.runs + 1:06d}-{run_id}"
            files = await self._upload(table.name, snapshot_id, staging, held)
        finally:
            await staging.cleanup()
        rows, columns = written
        snapshot = {
            "id": snapshot_id,
            "location": f"{curated_prefix(table.name)}{snapshot_id}/",
            "inputs": versions,
            "definition": definition,
            "rows": rows,
            "files": files,
            "columns": [list(c) for c in columns],
            "created_at": iso_utc(self._clock.now()),
        }
        empty = sorted(n for n, k in keys.items() if not k)  # a left join's side: null columns
        if empty:
            snapshot["empty_inputs"] = empty
        history = list(pointer.last_run.get("previous", []))
        if current is not None:
            history.append({"id": current["id"], "superseded_at": snapshot["created_at"]})
        held.check()
        pointer = await self._bookmarks.put(
            replace(
                pointer,
                runs=pointer.runs + 1,
                last_run={
                    **{k: v for k, v in pointer.last_run.items() if k == "catalog"},
                    "snapshot": snapshot,
                    "previous": history,
                    "run_id": run_id,
                },
            )
        )
        self._progress(f"{table.name}: snapshot {snapshot_id}, {rows} rows, {files} files")
        return pointer, snapshot

    def _result(
        self,
        table: Table,
        run: int,
        snapshot: dict[str, Any],
        catalog: dict[str, Any],
        expired: int,
        started: float,
    ) -> CurateResult:
        return CurateResult(
            table.name,
            run,
            curated=int(snapshot["rows"]),
            files=int(snapshot["files"]),
            catalog={**catalog, "snapshot": snapshot["id"], "expired": expired},
            seconds=time.perf_counter() - started,
        )

    async def _parquet_keys(self, dataset: str) -> list[str]:
        keys = await self._index.keys_after(curated_prefix(dataset))
        return [k for k in keys if k.endswith(PARQUET_SUFFIX)]

    def _compute(
        self,
        registry: DatasetRegistry,
        table: Table,
        paths: Mapping[str, list[str]],
        staging: Staging,
    ) -> tuple[int, tuple[tuple[str, str], ...]]:
        rows = table_rows(self._spark, registry, table, paths).persist()
        try:
            count = rows.count()
            tasks = max(1, -(-count // ROWS_PER_FILE))
            rows.coalesce(tasks).write.parquet(
                staging.output(SNAPSHOT_OUTPUT), mode="overwrite", compression="snappy"
            )
            columns = tuple((f.name, f.dataType.simpleString()) for f in rows.schema.fields)
        finally:
            rows.unpersist()
        return count, columns

    async def _upload(self, table: str, snapshot_id: str, staging: Staging, held: HeldClaim) -> int:
        files = 0
        for relative, body in sorted(await staging.outputs(SNAPSHOT_OUTPUT)):
            if not relative.endswith(".parquet"):
                continue
            digest = hashlib.sha256(body).hexdigest()[:16]
            key = f"{curated_prefix(table)}{snapshot_id}/part-{files:05d}-{digest}{PARQUET_SUFFIX}"
            obj = RawObject(
                key,
                body,
                0,
                snapshot_id,
                snapshot_id,
                {"writer": "curate"},
                content_type="application/vnd.apache.parquet",
                content_encoding="identity",
            )
            await held.publishing(self._lake.put(obj))
            files += 1
        return files

    async def _point_catalog(self, table: str, snapshot: dict[str, Any]) -> dict[str, Any]:
        """The Glue table at the snapshot's folder, with its columns: one UpdateTable."""
        columns = tuple((str(n), str(t)) for n, t in snapshot["columns"])
        location = f"{self._lake_url}/{snapshot['location']}"
        await self._catalog.ensure_table(TableShape(table, columns, (), location, archive=False))
        return {"table": table, "location": location}

    async def _expire(self, table: str, pointer: Bookmark, held: HeldClaim) -> int:
        """Delete snapshots superseded more than `retain_s` ago and folders no pointer names;
        never the pointer's, the latest superseded one, nor the one Glue names or named before
        (`last_run.catalog`); how many were deleted."""
        current = snapshot_of(pointer)
        history = list(pointer.last_run.get("previous", []))
        cutoff = self._clock.now() - timedelta(seconds=self._retain_s)
        keep = {current["id"]} if current else set()
        glue = pointer.last_run.get("catalog") or {}
        keep |= {glue[k] for k in ("snapshot", "previous") if glue.get(k)}
        kept = [
            h
            for i, h in enumerate(history)
            if i == len(history) - 1
            or h["id"] in keep
            or datetime.fromisoformat(h["superseded_at"]) > cutoff
        ]
        keep |= {h["id"] for h in kept}
        prefix = curated_prefix(table)
        folders: dict[str, list[str]] = {}
        for key in await self._index.keys_after(prefix):
            folders.setdefault(key[len(prefix) :].split("/", 1)[0], []).append(key)
        gone = [f for f in folders if f not in keep and f.startswith(SNAPSHOT_FOLDER)]
        for folder in gone:
            held.check()
            await self._index.delete(folders[folder])
        if len(kept) != len(history):
            held.check()
            await self._bookmarks.put(
                replace(pointer, last_run={**pointer.last_run, "previous": kept})
            )
        if gone:
            log.info("snapshots expired", extra={"table": table, "folders": gone})
        return len(gone)
