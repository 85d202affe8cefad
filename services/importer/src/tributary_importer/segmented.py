"""Runs in checkpointed segments: the date windows of a windowed source, or the parents of a
child resource. No gap, no duplicate, whatever crashes.

1. Record the run (window, start time, lower bound, and the end: a fixed `end_value`, a
   backfill's `--to`, else the start time) with a conditional write, before fetching.
2. Segment by segment (a `step`-long window `[start, end)`, or one parent record): fetch its
   pages (the bounds sent as `param` / `end_param` or in the POST body; a child's path filled
   from the parent) and land each page as a create-only object
   `raw/<dataset>/…/importer-<source>-<window>-s<SSSSS>-p<NNNNN>.ndjson.gz`.
3. Checkpoint (conditional write) the segments done, a digest of their keys in order and the
   highest cursor so far; for a child, the parents' own cursors and look-back ids (in the
   state blob once large). A window is checkpointed after it landed records; parents every
   `CHECKPOINT_EVERY` or once `CHECKPOINT_RECORDS` landed (redoing them costs requests, not
   data: what they landed is read back), empty windows every `CHECKPOINT_EVERY`.
4. Resuming: skip the segments done; read back every id landed in the segments after them
   (whichever parent now sits there). If the parents moved (the keys of the done ones are not
   the same in the same order), record that, and start again at the first parent with every id
   the interrupted attempts landed read back (again after another crash).
5. When every segment is done: move the cursor, drop the parents no longer listed, and end the
   run (conditional write).

The page loop is the flat runner's: pages from `fetch.SourceClient.pages` (pages in flight,
Retry-After, pacing, redaction), landed by `landing.PageLander` (ids, dedupe, create-only
objects, look-back trimming, metrics); only the segments and their checkpoints are this
module's.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson

from tributary.batch import decode_ndjson_gz
from tributary.clock import Clock, iso_utc
from tributary.dataset import Dataset, scalar_text
from tributary.errors import PermanentError, TributaryError
from tributary.layout import Zone, partition_prefix
from tributary.metrics import Metrics
from tributary.raw_writer import RawWriter
from tributary_importer.cursor import CursorType, cursor_key, lower_bound, type_of
from tributary_importer.fetch import SourceClient
from tributary_importer.landing import (
    PageLander,
    RunResult,
    canonical_id,
    emit_cursor_lag,
    highest,
)
from tributary_importer.source import SourceSpec
from tributary_importer.state import RunInfo, SourceState, StateStore
from tributary_importer.windows import just_after, slices

log = logging.getLogger(__name__)
CHECKPOINT_EVERY = 16
CHECKPOINT_RECORDS = 5000  # a child checkpoints at the latest after this many records
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Segment:
    """One checkpointed part of a run."""

    key: str  # a window's start, or the parent's primary key
    lower: str | None
    upper: str | None  # sent as the exclusive end
    path: str | None = None  # a child's filled-in path
    parent: dict[str, Any] = field(default_factory=dict)  # fields copied into its records


@dataclass(slots=True)
class _Tally:
    pages: int = 0
    records: int = 0
    skipped: int = 0


class _ParentsMovedError(TributaryError):
    """The parent list is not what the interrupted attempt saw: start again from the first."""


class SegmentedRun:
    """One run of a windowed or child source."""

    def __init__(
        self,
        writer: RawWriter,
        store: StateStore,
        clock: Clock,
        metrics: Metrics,
        progress: Callable[[str, int, int], None] | None = None,
        versioned: Dataset | None = None,
    ) -> None:
        self._writer = writer
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._progress = progress
        self._versioned = versioned  # a dataset with a version_field: its ids, as run.py's

    async def run(
        self,
        client: SourceClient,
        state_key: str,
        start: str | None = None,
        end: str | None = None,
        *,
        advance: bool = True,
    ) -> RunResult:
        """Run (or resume) the source's segments; `start`/`end` bound a backfill."""
        inc = client.spec.incremental
        ctype = inc.cursor_type() if inc is not None else CursorType.TEXT
        for bound in (start, end):  # before anything is recorded, as run.py checks them
            if bound is not None and ctype is not CursorType.TEXT and type_of(bound) is not ctype:
                raise PermanentError(f"{client.name}: backfill bound {bound!r} is not a {ctype}")
        state = await self._store.get(state_key)
        resumed = state.run is not None
        if state.run is None:
            state = await self._begin(client, state, start, end, advance)
        assert state.run is not None
        run = state.run
        started = datetime.fromisoformat(run.started_at)
        spec = client.spec
        stem = f"{partition_prefix(Zone.RAW, spec.dataset, started)}importer-{client.name}-"
        stem += f"{run.window}-s"
        landed: dict[int, list[str]] = defaultdict(list)
        if resumed:
            for key in await self._writer.keys(stem):
                landed[int(key[len(stem) :].split("-")[0])].append(key)
        # What the interrupted attempts landed after the last checkpoint, read back for every
        # segment still to do: the parents may sit at other positions now.
        pending = await self._read_back(landed, 0 if run.readback_all else run.done)
        tally = _Tally()
        try:
            state = await self._segments(client, state, stem, landed, pending, end, tally)
        except _ParentsMovedError:
            log.warning("%s: the parents moved since the interrupted attempt; all again", state_key)
            every = await self._read_back(landed, 0)
            state = await self._store.get(state_key)
            assert state.run is not None
            again = replace(state.run, done=0, mark=None, chain=None, readback_all=True)
            state = await self._store.put(replace(state, run=again))
            state = await self._segments(client, state, stem, landed, every, end, tally)
        return await self._finish(client, state, tally, resumed, advance)

    async def _read_back(self, landed: dict[int, list[str]], after: int) -> set[str]:
        ids: set[str] = set()
        for index, keys in landed.items():
            if index > after:
                for key in keys:
                    ids.update(await self._ids(key))
        return ids

    async def _begin(
        self,
        client: SourceClient,
        state: SourceState,
        start: str | None,
        end: str | None,
        advance: bool,
    ) -> SourceState:
        inc = client.spec.incremental
        now = self._clock.now()
        lower, upper = start, None
        if inc is not None:
            ctype = inc.cursor_type()
            if lower is None:
                lower = lower_bound(state.cursor or inc.initial, inc.lag_s)
            if end is not None:
                upper = just_after(end, ctype)
            elif inc.end_value is not None:
                upper = inc.end_value
            elif ctype is CursorType.TIMESTAMP:
                upper = iso_utc(now)  # the run's start: later changes are the next run's
        window = f"{'w' if advance else 'b'}{state.runs + 1:06d}.{now:%Y%m%dT%H%M%S}"
        run = RunInfo(window, iso_utc(now), lower, upper=upper)
        return await self._store.put(replace(state, run=run, runs=state.runs + 1))

    async def _plan(self, client: SourceClient, state: SourceState) -> AsyncIterator[Segment]:
        """The run's segments, in order: its windows, or one per parent record."""
        spec, run = client.spec, state.run
        assert run is not None
        inc = spec.incremental
        parent = client.parent
        if parent is None:
            for lower, upper in slices(run.lower, run.upper, inc.step if inc else None):
                yield Segment(str(lower), lower, upper)
            return
        async for page in parent.pages(None):
            for record in page.records:
                key = scalar_text(record.get(parent.spec.id_field))
                if key is None:
                    raise PermanentError(
                        f"{client.name}: a record of its parent {parent.name!r} has no "
                        f"{parent.spec.id_field!r}; parents need a primary key"
                    )
                known = state.parents.get(key, {}).get("cursor")
                lower = None
                if inc is not None and run.window.startswith("b"):
                    lower = run.lower  # a backfill's --from, for every parent
                elif inc is not None:
                    lower = lower_bound(known or inc.initial, inc.lag_s)
                path, copied = _fill_path(client, record), _copied(spec, parent.name, record)
                # the run's end (its start, `end_value` or a backfill's --to), as for windows
                yield Segment(key, lower, run.upper if inc is not None else None, path, copied)

    async def _segments(
        self,
        client: SourceClient,
        state: SourceState,
        stem: str,
        landed: dict[int, list[str]],
        pending: set[str],
        end: str | None,
        tally: _Tally,
    ) -> SourceState:
        spec = client.spec
        inc = spec.incremental
        ctype = inc.cursor_type() if inc is not None else CursorType.TEXT
        assert state.run is not None
        done, mark, chain = state.run.done, state.run.mark, state.run.chain
        tail = {canonical_id(k, v, ctype): v for k, v in state.seen.items()}
        cursor = highest(state.cursor, state.run.high, ctype)
        child = client.parent is not None
        parents = dict(state.parents)
        listed: set[str] = set()
        index = unsaved = unsaved_records = 0
        digest = ""
        async for segment in self._plan(client, state):
            index += 1
            listed.add(segment.key)
            digest = _chained(digest, segment.key)
            if index < done:
                continue
            if index == done:
                if segment.key != mark or (chain is not None and digest != chain):
                    raise _ParentsMovedError
                continue
            if child:  # a child's look-back is its parent's own
                tail = dict(parents.get(segment.key, {}).get("seen", {}))
            earlier = set(tail) | pending
            next_page = 1
            for key in landed.get(index, []):  # what the interrupted attempt landed here
                next_page = max(next_page, int(key.rsplit("-p", 1)[1].split(".")[0]) + 1)
            before = tally.records
            seg_cursor = None
            prefix = f"{stem}{index:05d}-p"
            async for landed_now, value in self._land(
                client, state.run, segment, (prefix, next_page), earlier, tail, end
            ):
                tally.pages += 1
                tally.records += landed_now[0]
                tally.skipped += landed_now[1]
                if value is not None:
                    seg_cursor = highest(seg_cursor, value, ctype)
                if self._progress is not None:
                    self._progress(client.name, tally.pages, tally.records)
            if inc is not None and seg_cursor is not None:
                keep_from = cursor_key(lower_bound(seg_cursor, inc.lag_s), ctype)
                tail = {k: v for k, v in tail.items() if cursor_key(v, ctype) >= keep_from}
            cursor = highest(cursor, seg_cursor, ctype)
            if child and seg_cursor is not None:
                parents[segment.key] = {"cursor": seg_cursor, "seen": tail}
            unsaved += 1
            unsaved_records += tally.records - before
            if child:
                due = unsaved >= CHECKPOINT_EVERY or unsaved_records >= CHECKPOINT_RECORDS
            else:
                due = unsaved >= CHECKPOINT_EVERY or tally.records > before or bool(seg_cursor)
            if not due:
                continue
            run = replace(state.run, done=index, mark=segment.key, high=cursor, chain=digest)
            if child:
                state = await self._store.put(replace(state, run=run, parents=parents))
            else:
                state = await self._store.put(replace(state, run=run, seen=tail))
            unsaved = unsaved_records = 0
        assert state.run is not None
        if index < state.run.done:
            raise _ParentsMovedError  # fewer parents than the interrupted attempt had done
        if not child:
            return replace(state, cursor=cursor, seen=tail)
        # the parents no longer listed are gone for good: their state would only grow
        kept = {k: v for k, v in parents.items() if k in listed}
        return replace(state, cursor=cursor, parents=kept)

    async def _land(
        self,
        client: SourceClient,
        run: RunInfo,
        segment: Segment,
        first: tuple[str, int],
        earlier: set[str],
        tail: dict[str, str],
        end: str | None,
    ) -> AsyncIterator[tuple[tuple[int, int], str | None]]:
        """Land the segment's pages from object `first` = (key prefix, page number) on, with
        the flat runner's `PageLander`; yields ((landed, skipped), highest cursor value) per
        page."""
        spec = client.spec
        prefix, next_page = first
        lander = PageLander(
            self._writer,
            self._metrics,
            client.name,
            spec,
            run.window,
            run.started_at,
            self._versioned,
            end,
        )
        seg_high: str | None = None
        async for page in client.pages(segment.lower, segment.upper, segment.path):
            key = f"{prefix}{next_page:05d}.ndjson.gz"
            landed = await lander.land(
                page, key, earlier, tail, f"{segment.key} ", segment.parent or None
            )
            if landed.records:
                next_page += 1
            seg_high = highest(seg_high, landed.high, lander.ctype)
            lander.trim(tail, seg_high, len(page.records))  # the look-back, per page
            yield (landed.records, landed.skipped), landed.high

    async def _ids(self, key: str) -> set[str]:
        return {orjson.loads(line)["id"] for line in decode_ndjson_gz(await self._writer.get(key))}

    async def _finish(
        self,
        client: SourceClient,
        state: SourceState,
        tally: _Tally,
        resumed: bool,
        advance: bool,
    ) -> RunResult:
        assert state.run is not None
        run = state.run
        finished = {
            "finished_at": iso_utc(self._clock.now()),
            "window": run.window,
            "pages": tally.pages,
            "records": tally.records,
            "skipped": tally.skipped,
            "retries": client.retries,
            "segments": run.done,
        }
        cursor = state.cursor if advance else None  # a backfill's own state keeps no cursor
        await self._store.put(replace(state, cursor=cursor, run=None, last_run=finished))
        self._metrics.add("ImportRetries", client.retries, source=client.name)
        # as the flat runner: the lag of the cursor this run moved (a backfill's is None)
        emit_cursor_lag(self._metrics, self._clock, client.name, cursor)
        log.info("import run finished", extra={"source": client.name, **finished})
        return RunResult(
            client.name, run.window, tally.pages, tally.records, tally.skipped, cursor, resumed
        )


def _chained(digest: str, key: str) -> str:
    """The digest of the segment keys so far, in order (a resume checks the parents did not
    move)."""
    return hashlib.sha256(f"{digest}\n{key}".encode()).hexdigest()[:32]


def _fill_path(client: SourceClient, record: dict[str, Any]) -> str:
    """The child's path with the parent record's fields in its placeholders."""

    def value(match: re.Match[str]) -> str:
        resolve = client.spec.resolve[match[1]]
        found = scalar_text(record.get(resolve.field))
        if found is None:
            raise PermanentError(
                f"{client.name}: a parent record has no {resolve.field!r} for {{{match[1]}}}"
            )
        return quote(found, safe="")

    return _PLACEHOLDER.sub(value, client.spec.path)


def _copied(spec: SourceSpec, parent: str, record: dict[str, Any]) -> dict[str, Any]:
    """The parent's fields a child's records carry, as `_<parent>_<field>` (dlt's names)."""
    return {f"_{parent}_{f}": record.get(f) for f in spec.include_from_parent}
