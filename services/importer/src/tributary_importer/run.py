"""One import run of one source: no gaps, no duplicates, whatever crashes.

1. Read the state. If no run is in progress, record one (window = run number, start time,
   incremental lower bound = cursor − look-back) with a conditional write, before fetching.
2. Resuming an interrupted run: list its objects (same window, same hour partition — the start
   time is part of the run) and read their ids back, so nothing lands twice even if the source's
   pages shifted in between. Those ids are held in memory for the rest of the run.
3. Fetch page by page; each page's new records become one create-only object
   `raw/<dataset>/…/importer-<source>-<window>-p<NNNNN>.ndjson.gz`. Records already landed (by the
   interrupted attempt, or at the cursor's boundary by the previous run) are skipped. The page
   loop (`fetch.SourceClient.pages`, landed by `landing.PageLander`) is the one the windowed
   and child runner (`segmented`) uses too.
4. Only when every page is durable: advance the cursor and end the run (conditional write).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import orjson

from tributary.batch import decode_ndjson_gz
from tributary.clock import Clock, iso_utc
from tributary.dataset import Dataset, DatasetRegistry, scalar_text
from tributary.errors import PermanentError
from tributary.layout import Zone, partition_prefix
from tributary.metrics import Metrics
from tributary.raw_writer import RawWriter
from tributary_importer.cursor import CursorType, lower_bound, type_of
from tributary_importer.fetch import SourceClient
from tributary_importer.landing import (
    PageLander,
    RunResult,
    canonical_id,
    emit_cursor_lag,
    highest,
)
from tributary_importer.segmented import SegmentedRun
from tributary_importer.state import RunInfo, StateStore

__all__ = ["Importer", "RunResult"]

log = logging.getLogger(__name__)


class Importer:
    """Runs sources against a raw writer and a state store."""

    def __init__(
        self,
        writer: RawWriter,
        store: StateStore,
        clock: Clock,
        metrics: Metrics,
        registry: DatasetRegistry | None = None,
    ) -> None:
        self._writer = writer
        self._store = store
        self._clock = clock
        self._metrics = metrics
        # A dataset with a `version_field` gets `<id>@<version>` ids, as the API and the
        # consumer make them (without one: the cursor value, else a content hash).
        self._registry = registry
        self.progress: Callable[[str, int, int], None] | None = None  # (source, pages, records)

    async def run_once(self, client: SourceClient) -> RunResult:
        """One incremental run of one source (resuming an interrupted one)."""
        if client.spec.windowed():
            return await self._segmented(client.spec.dataset).run(client, client.name)
        return await self._run(client, client.name, None, None, advance=True)

    async def backfill(self, client: SourceClient, start: str, end: str) -> RunResult:
        """Re-import `start` ≤ cursor ≤ `end` into its own window; the cursor does not move.
        Rerunning the same backfill after a crash resumes it."""
        if client.spec.incremental is None:
            raise PermanentError(f"{client.name} has no incremental cursor to backfill by")
        tag = hashlib.sha256(f"{start}\n{end}".encode()).hexdigest()[:10]
        if client.spec.windowed():
            key = f"{client.name}#backfill#{tag}"
            return await self._segmented(client.spec.dataset).run(
                client, key, start, end, advance=False
            )
        return await self._run(client, f"{client.name}#backfill#{tag}", start, end, advance=False)

    def _segmented(self, dataset: str) -> SegmentedRun:
        """The runner of windowed and child sources (`segmented`), on the same collaborators."""
        return SegmentedRun(
            self._writer,
            self._store,
            self._clock,
            self._metrics,
            self.progress,
            self._versioned(dataset),
        )

    def _versioned(self, dataset: str) -> Dataset | None:
        """The dataset's declaration when it has a `version_field` (ids `<id>@<version>`)."""
        found = self._registry.get(dataset) if self._registry is not None else None
        return found if found is not None and found.version_field else None

    async def _run(
        self,
        client: SourceClient,
        state_key: str,
        start: str | None,
        end: str | None,
        *,
        advance: bool,
    ) -> RunResult:
        name, spec = client.name, client.spec
        inc = spec.incremental
        state = await self._store.get(state_key)
        resumed = state.run is not None
        run = state.run
        if run is None:
            lower = start
            if inc is not None and lower is None:
                lower = lower_bound(state.cursor or inc.initial, inc.lag_s)
            now = self._clock.now()
            # Run number + start time: unique even after a state reset, and the same on resume
            # (both are stored with the run).
            window = f"{'w' if advance else 'b'}{state.runs + 1:06d}.{now:%Y%m%dT%H%M%S}"
            run = RunInfo(window, iso_utc(now), lower)
            state = await self._store.put(replace(state, run=run, runs=state.runs + 1))
        started = datetime.fromisoformat(run.started_at)
        prefix = (
            f"{partition_prefix(Zone.RAW, spec.dataset, started)}importer-{name}-{run.window}-p"
        )
        # Dedupe: the previous run's look-back ids (bounded by the look-back window), the last
        # two pages (a record that moves while we page — it changed, or others were inserted —
        # lands on a neighbour) and, on resume only, every id the interrupted attempt landed
        # (read back below). That last set is NOT bounded: it grows with what the interrupted
        # attempt landed (~210 bytes of RSS per id: bench/importer_resume.py), because a source
        # need not order its records by cursor, so any of them may come back on any page.
        # Ids carry the cursor value's canonical spelling, so one instant spelled two ways
        # (Z, +00:00, another offset) is one id; state written before that is re-keyed here.
        ctype = inc.cursor_type() if inc is not None else CursorType.TEXT
        versioned = self._versioned(spec.dataset)
        tail: dict[str, str] = {canonical_id(k, v, ctype): v for k, v in state.seen.items()}
        earlier: set[str] = set(tail)
        next_page = 1
        for key in await self._writer.keys(prefix):  # what an interrupted attempt landed
            next_page = max(next_page, int(key[len(prefix) :].split(".")[0]) + 1)
            for line in decode_ndjson_gz(await self._writer.get(key)):
                envelope = orjson.loads(line)
                landed_id, pk = envelope["id"], scalar_text(envelope["data"].get(spec.id_field))
                earlier.add(landed_id)
                if inc is None or pk is None or not landed_id.startswith(f"{pk}@"):
                    continue
                cursor_value = scalar_text(envelope["data"].get(inc.field))
                if cursor_value is None:
                    continue  # no cursor value: the id is a content hash
                if versioned is not None and versioned.version_field != inc.field:
                    tail[landed_id] = cursor_value  # the id's version is not the cursor
                    continue
                # The version part of the id is the exact value (the data may hold a float).
                value = landed_id[len(pk) + 1 :]
                earlier.add(canonical_id(landed_id, value, ctype))
                tail[canonical_id(landed_id, value, ctype)] = value
        for bound in (start, end):
            if bound is not None and ctype is not CursorType.TEXT and type_of(bound) is not ctype:
                raise PermanentError(f"{name}: backfill bound {bound!r} is not a {ctype}")
        cursor = state.cursor
        pages = records = skipped = 0
        lander = PageLander(
            self._writer, self._metrics, name, spec, run.window, run.started_at, versioned, end
        )
        async for page in client.pages(run.lower):
            key = f"{prefix}{next_page:05d}.ndjson.gz"
            landed = await lander.land(page, key, earlier, tail)
            pages += 1
            if landed.records:
                next_page += 1
                records += landed.records
            skipped += landed.skipped
            cursor = highest(cursor, landed.high, ctype)
            lander.trim(tail, cursor, len(page.records))
            if self.progress is not None:
                self.progress(name, pages, records)
        lander.trim(tail, cursor)
        if inc is None or cursor is None:
            tail = {}
        finished = {
            "finished_at": iso_utc(self._clock.now()),
            "window": run.window,
            "pages": pages,
            "records": records,
            "skipped": skipped,
            "retries": client.retries,
        }
        if not advance:
            cursor, tail = state.cursor, dict(state.seen)
        state = await self._store.put(
            replace(state, cursor=cursor, seen=tail, run=None, last_run=finished)
        )
        self._metrics.add("ImportRetries", client.retries, source=name)
        if advance:
            emit_cursor_lag(self._metrics, self._clock, name, cursor)
        log.info("import run finished", extra={"source": name, **finished, "cursor": cursor})
        return RunResult(name, run.window, pages, records, skipped, cursor, resumed)
