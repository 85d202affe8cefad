"""One import run of one source: no gaps, no duplicates, whatever crashes.

1. Read the state. If no run is in progress, record one (window = run number, start time,
   incremental lower bound = cursor − look-back) with a conditional write, before fetching.
2. Resuming an interrupted run: list its objects (same window, same hour partition — the start
   time is part of the run) and read their ids back, so nothing lands twice even if the source's
   pages shifted in between. Those ids are held in memory for the rest of the run.
3. Fetch page by page; each page's new records become one create-only object
   `raw/<dataset>/…/importer-<source>-<window>-p<NNNNN>.ndjson.gz`. Records already landed (by the
   interrupted attempt, or at the cursor's boundary by the previous run) are skipped.
4. Only when every page is durable: advance the cursor and end the run (conditional write).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from tributary.batch import decode_ndjson_gz, encode_ndjson_gz
from tributary.clock import Clock, iso_utc
from tributary.dataset import scalar_text
from tributary.envelope import encode_envelope
from tributary.errors import PermanentError
from tributary.layout import Zone, partition_prefix
from tributary.metrics import Metrics
from tributary.raw_writer import RawObject, RawWriter, WriteOutcome
from tributary_importer.cursor import (
    CursorType,
    canonical,
    cursor_key,
    lower_bound,
    parse_instant,
    type_of,
)
from tributary_importer.fetch import SourceClient
from tributary_importer.state import RunInfo, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did."""

    source: str
    window: str
    pages: int
    records: int
    skipped: int
    cursor: str | None
    resumed: bool


class Importer:
    """Runs sources against a raw writer and a state store."""

    def __init__(
        self,
        writer: RawWriter,
        store: StateStore,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._writer = writer
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self.progress: Callable[[str, int, int], None] | None = None  # (source, pages, records)

    async def run_once(self, client: SourceClient) -> RunResult:
        """One incremental run of one source (resuming an interrupted one)."""
        return await self._run(client, client.name, None, None, advance=True)

    async def backfill(self, client: SourceClient, start: str, end: str) -> RunResult:
        """Re-import `start` ≤ cursor ≤ `end` into its own window; the cursor does not move.
        Rerunning the same backfill after a crash resumes it."""
        if client.spec.incremental is None:
            raise PermanentError(f"{client.name} has no incremental cursor to backfill by")
        tag = hashlib.sha256(f"{start}\n{end}".encode()).hexdigest()[:10]
        return await self._run(client, f"{client.name}#backfill#{tag}", start, end, advance=False)

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
        tail: dict[str, str] = {_canonical_id(k, v, ctype): v for k, v in state.seen.items()}
        earlier: set[str] = set(tail)
        previous_page: set[str] = set()
        next_page = 1
        for key in await self._writer.keys(prefix):  # what an interrupted attempt landed
            next_page = max(next_page, int(key[len(prefix) :].split(".")[0]) + 1)
            for line in decode_ndjson_gz(await self._writer.get(key)):
                envelope = orjson.loads(line)
                landed_id, pk = envelope["id"], scalar_text(envelope["data"].get(spec.id_field))
                earlier.add(landed_id)
                if inc is None or pk is None or not landed_id.startswith(f"{pk}@"):
                    continue
                if scalar_text(envelope["data"].get(inc.field)) is None:
                    continue  # no cursor value: the id is a content hash
                # The version part of the id is the exact value (the data may hold a float).
                value = landed_id[len(pk) + 1 :]
                earlier.add(_canonical_id(landed_id, value, ctype))
                tail[_canonical_id(landed_id, value, ctype)] = value
        for bound in (start, end):
            if bound is not None and ctype is not CursorType.TEXT and type_of(bound) is not ctype:
                raise PermanentError(f"{name}: backfill bound {bound!r} is not a {ctype}")
        cursor = state.cursor
        pages = records = skipped = 0
        async for page in client.pages(run.lower):
            lines: list[bytes] = []
            this_page: set[str] = set()
            for index, record in enumerate(page.records):
                record_id, value = self._identify(
                    spec.id_field, inc.field if inc else None, record, page.exact.get(index), ctype
                )
                if value is not None:
                    _check_type(name, spec.id_field, record, inc.field if inc else "", value, ctype)
                    if end is not None and cursor_key(value, ctype) > cursor_key(end, ctype):
                        continue  # a backfill's upper bound
                    tail[record_id] = value
                    if cursor is None or cursor_key(value, ctype) > cursor_key(cursor, ctype):
                        cursor = value
                if record_id in earlier or record_id in previous_page or record_id in this_page:
                    skipped += 1
                    continue
                this_page.add(record_id)
                lines.append(
                    encode_envelope(
                        spec.dataset, record_id, f"importer:{name}", run.started_at, record
                    )
                )
            pages += 1
            if lines:
                key = f"{prefix}{next_page:05d}.ndjson.gz"
                outcome = await self._writer.put(
                    RawObject(
                        key,
                        encode_ndjson_gz(lines),
                        len(lines),
                        f"page {page.number}",
                        f"page {page.number}",
                        {"source": name, "window": run.window},
                    )
                )
                if outcome is WriteOutcome.ALREADY_EXISTS:
                    raise PermanentError(
                        f"{key} exists: another run of {name!r} is writing "
                        "the same window; runs of one source must not overlap"
                    )
                next_page += 1
                records += len(lines)
                self._metrics.add("RecordsImported", len(lines), source=name)
            previous_page = this_page
            self._metrics.add("PagesFetched", 1, source=name)
            if inc is not None and cursor is not None and len(tail) > 4 * len(page.records):
                keep_from = lower_bound(cursor, inc.lag_s)  # only the look-back is needed
                tail = {
                    k: v
                    for k, v in tail.items()
                    if cursor_key(v, ctype) >= cursor_key(keep_from, ctype)
                }
            if self.progress is not None:
                self.progress(name, pages, records)
        if inc is not None and cursor is not None:
            keep_from = lower_bound(cursor, inc.lag_s)
            tail = {
                k: v
                for k, v in tail.items()
                if cursor_key(v, ctype) >= cursor_key(keep_from, ctype)
            }
        else:
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
        instant = parse_instant(cursor) if cursor is not None and advance else None
        if instant is not None:  # only timestamp cursors have a lag
            lag = (self._clock.now() - instant[0]).total_seconds()
            self._metrics.gauge("CursorLagSeconds", lag, source=name)
        log.info("import run finished", extra={"source": name, **finished, "cursor": cursor})
        return RunResult(name, run.window, pages, records, skipped, cursor, resumed)

    @staticmethod
    def _identify(
        id_field: str,
        cursor_field: str | None,
        record: dict[str, Any],
        exact: str | None = None,
        ctype: CursorType | None = None,
    ) -> tuple[str, str | None]:
        """(envelope id, cursor value). The id is `<pk>@<version>`: the cursor value's canonical
        spelling (`cursor.canonical`: one instant is one id however the vendor spells it) when
        the source has one, else a hash of the content, so a full-refresh snapshot re-lands an
        unchanged record under the same id (deduped downstream) and a changed one as new."""
        pk = scalar_text(record.get(id_field))
        value = exact or (scalar_text(record.get(cursor_field)) if cursor_field else None)
        if pk is not None and value is not None:
            return f"{pk}@{canonical(value, ctype)}", value
        digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return (f"{pk}@{digest[:12]}" if pk is not None else digest[:24]), value


def _canonical_id(record_id: str, value: str, ctype: CursorType | None = None) -> str:
    """A stored look-back id `<pk>@<value>` with its value in canonical spelling."""
    suffix = f"@{value}"
    if record_id.endswith(suffix):
        return f"{record_id[: -len(suffix)]}@{canonical(value, ctype)}"
    return record_id


def _check_type(
    source: str, id_field: str, record: dict[str, Any], field: str, value: str, want: CursorType
) -> None:
    """A cursor value of another type than the source's is an error naming the record (else
    one "N/A" would become the cursor forever, or epoch numbers never advance a timestamp)."""
    if want is not CursorType.TEXT and type_of(value) is not want:
        raise PermanentError(
            f"{source}: record {id_field}={record.get(id_field)!r} has {field}={value!r}, not a "
            f"{want} like the source's cursor; its page and those after it were not landed, the "
            "cursor has not moved (fix the record at the source, or declare incremental.type)"
        )
