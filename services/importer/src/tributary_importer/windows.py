"""Date windows: a run's range `[lower, upper)` sliced into `step`-long windows, each fetched
with its own bounds and checkpointed, so a first import of a year is many small requests and
a crash resumes at the window it stopped in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

from tributary.clock import iso_utc
from tributary_importer.cursor import CursorType, cursor_key, parse_instant
from tributary_importer.source_extra import parse_step


def slices(
    lower: str | None, upper: str | None, step: str | None
) -> Iterator[tuple[str | None, str | None]]:
    """`[start, end)` windows covering `[lower, upper)`; one window when there is no step (or
    no upper bound to step to). The first window starts at `lower` as it is spelled; the
    others at UTC instants."""
    if step is None or lower is None or upper is None:
        yield lower, upper
        return
    start, end = parse_instant(lower), parse_instant(upper)
    if start is None or end is None:
        raise ValueError(f"windows need timestamp bounds, got {lower!r} and {upper!r}")
    length = parse_step(step)
    at, first = start[0], True
    while at < end[0]:
        nxt = min(at + length, end[0])
        yield (lower if first else iso_utc(at)), (upper if nxt == end[0] else iso_utc(nxt))
        at, first = nxt, False


def just_after(value: str, ctype: CursorType) -> str | None:
    """The smallest value above `value` a vendor would see as "after" it, to send an inclusive
    end (a backfill's `--to`) to an exclusive `end_param`: a timestamp plus a microsecond, an
    integer plus one. None for decimals and text (filtered on our side only)."""
    kind = cursor_key(value, ctype)
    if ctype is CursorType.TIMESTAMP and kind[0] == 1:
        return (kind[2] + timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if ctype is CursorType.NUMBER and kind[0] == 0 and kind[1] == kind[1].to_integral_value():
        return str(int(kind[1] + Decimal(1)))
    return None
