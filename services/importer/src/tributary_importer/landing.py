"""Landing fetched pages: the one page loop body the flat runner (`run`) and the windowed and
child runner (`segmented`) share, over the pages `fetch.SourceClient.pages` yields (its pages
in flight, Retry-After, pacing and redaction).

Per page: each record's envelope id (`<pk>@<version>`: the dataset's `version_field`, else the
cursor value's canonical spelling, else a content hash) and cursor value (checked against the
source's cursor type; past a backfill's end, dropped); records already landed (`earlier`: the
look-back and what an interrupted attempt landed; the previous page and this one) skipped; the
rest as one create-only object. The look-back tail is trimmed in place to the look-back window.
Also the result of a run and its `CursorLagSeconds` gauge, the same for both runners.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from tributary.batch import encode_ndjson_gz
from tributary.clock import Clock
from tributary.dataset import Dataset, scalar_text
from tributary.envelope import encode_envelope
from tributary.errors import PermanentError
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
from tributary_importer.fetch import Page
from tributary_importer.source import SourceSpec


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


@dataclass(frozen=True, slots=True)
class Landed:
    """What landing one page did: records landed, records skipped as already landed, and the
    highest cursor value on the page (None without one)."""

    records: int
    skipped: int
    high: str | None


@dataclass(slots=True)
class PageLander:
    """Lands the pages of one run of one source (window `window`, received at `received_at`);
    `end` is a backfill's inclusive upper bound, `versioned` the dataset when it has a
    `version_field`. Remembers the previous page's ids (a record that moves while we page lands
    on a neighbour)."""

    writer: RawWriter
    metrics: Metrics
    name: str
    spec: SourceSpec
    window: str
    received_at: str
    versioned: Dataset | None = None
    end: str | None = None
    _previous: set[str] = field(default_factory=set)

    @property
    def ctype(self) -> CursorType:
        """The source's cursor type (TEXT without a cursor)."""
        inc = self.spec.incremental
        return inc.cursor_type() if inc is not None else CursorType.TEXT

    async def land(
        self,
        page: Page,
        key: str,
        earlier: set[str],
        tail: dict[str, str],
        where: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Landed:
        """Land `page`'s new records as object `key` (written only when there are any), their
        fields with `extra` (a child's copied parent fields); every cursor value seen goes in
        `tail`."""
        spec, name, ctype = self.spec, self.name, self.ctype
        inc = spec.incremental
        cursor_field = inc.field if inc is not None else None
        lines: list[bytes] = []
        this_page: set[str] = set()
        skipped = 0
        high: str | None = None
        for index, record in enumerate(page.records):
            record_id, value = record_identity(
                spec.id_field, cursor_field, record, self.versioned, page.exact.get(index), ctype
            )
            if value is not None:
                check_type(name, spec.id_field, record, cursor_field or "", value, ctype)
                if self.end is not None and cursor_key(value, ctype) > cursor_key(self.end, ctype):
                    continue  # a backfill's upper bound, should the vendor send more
                tail[record_id] = value
                high = highest(high, value, ctype)
            if record_id in earlier or record_id in self._previous or record_id in this_page:
                skipped += 1
                continue
            this_page.add(record_id)
            data = {**record, **extra} if extra else record
            lines.append(
                encode_envelope(spec.dataset, record_id, f"importer:{name}", self.received_at, data)
            )
        if lines:
            await self._put(key, lines, f"{where}page {page.number}")
            self.metrics.add("RecordsImported", len(lines), source=name)
        self.metrics.add("PagesFetched", 1, source=name)
        self._previous = this_page
        return Landed(len(lines), skipped, high)

    def trim(self, tail: dict[str, str], cursor: str | None, page_size: int | None = None) -> None:
        """Drop from `tail` (in place) the values older than `cursor`'s look-back: only the
        look-back is needed to dedupe the boundary. With `page_size`, only once the tail has
        grown past 4 pages (per page: bounded memory without a scan per page)."""
        inc = self.spec.incremental
        if inc is None or cursor is None:
            return
        if page_size is not None and len(tail) <= 4 * page_size:
            return
        ctype = self.ctype  # once: the property works it out from the spec on each call
        keep_from = cursor_key(lower_bound(cursor, inc.lag_s), ctype)
        for old in [k for k, v in tail.items() if cursor_key(v, ctype) < keep_from]:
            del tail[old]

    async def _put(self, key: str, lines: list[bytes], where: str) -> None:
        meta = {"source": self.name, "window": self.window}
        outcome = await self.writer.put(
            RawObject(key, encode_ndjson_gz(lines), len(lines), where, where, meta)
        )
        if outcome is WriteOutcome.ALREADY_EXISTS:
            raise PermanentError(
                f"{key} exists: another run of {self.name!r} is writing the same window; runs "
                "of one source must not overlap"
            )


def identify(
    id_field: str,
    cursor_field: str | None,
    record: dict[str, Any],
    exact: str | None = None,
    ctype: CursorType | None = None,
) -> tuple[str, str | None]:
    """(envelope id, cursor value). The id is `<pk>@<version>`: the cursor value's canonical
    spelling (`cursor.canonical`: one instant is one id however the vendor spells it) when the
    source has one, else a hash of the content, so a full-refresh snapshot re-lands an
    unchanged record under the same id (deduped downstream) and a changed one as new."""
    pk = scalar_text(record.get(id_field))
    value = exact or (scalar_text(record.get(cursor_field)) if cursor_field else None)
    if pk is not None and value is not None:
        return f"{pk}@{canonical(value, ctype)}", value
    digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return (f"{pk}@{digest[:12]}" if pk is not None else digest[:24]), value


def record_identity(
    id_field: str,
    cursor_field: str | None,
    record: dict[str, Any],
    dataset: Dataset | None,
    exact: str | None = None,
    ctype: CursorType | None = None,
) -> tuple[str, str | None]:
    """(envelope id, cursor value) as an importer run lands `record` of `dataset`: the id from
    `identify`, replaced by the dataset's `<id>@<version>` when it declares a `version_field`
    (and the record has one)."""
    record_id, value = identify(id_field, cursor_field, record, exact, ctype)
    if dataset is not None and dataset.version_field:
        record_id = dataset.envelope_id(record) or record_id
    return record_id, value


def canonical_id(record_id: str, value: str, ctype: CursorType | None = None) -> str:
    """A stored look-back id `<pk>@<value>` with its value in canonical spelling."""
    suffix = f"@{value}"
    if record_id.endswith(suffix):
        return f"{record_id[: -len(suffix)]}@{canonical(value, ctype)}"
    return record_id


def check_type(
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


def highest(a: str | None, b: str | None, ctype: CursorType) -> str | None:
    """The higher of two cursor values (None is lowest)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if cursor_key(b, ctype) > cursor_key(a, ctype) else a


def emit_cursor_lag(metrics: Metrics, clock: Clock, source: str, cursor: str | None) -> None:
    """The `CursorLagSeconds` gauge (EMF): how far the source's cursor is behind now, after a
    run that moved it (flat, windowed or child alike); only timestamp cursors have a lag. It is
    the newest record's age: for a child, the highest cursor over all parents; for a windowed
    source, the last record's, not the end of the last window covered. None: nothing."""
    instant = parse_instant(cursor) if cursor is not None else None
    if instant is not None:
        lag = (clock.now() - instant[0]).total_seconds()
        metrics.gauge("CursorLagSeconds", lag, source=source)
