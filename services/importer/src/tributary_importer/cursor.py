"""Ordering cursor values as what they are: integers and decimals exactly, timestamps as
instants (whatever their format and UTC offset), anything else as text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from tributary.clock import iso_utc

_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
# ISO-8601 date-time with a fraction finer than microseconds (which datetime cannot hold).
_FINE = re.compile(r"(.*[T ]\d{2}:\d{2}:\d{2})\.(\d{7,})(.*)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = Decimal(0)

# (kind, number, instant, rest): numbers sort before timestamps before text; within a kind by
# value. `rest` holds a timestamp's digits past microseconds, or the text itself.
CursorKey = tuple[int, Decimal, datetime, str]


class CursorType(StrEnum):
    """What a source's cursor values are; fixed per source, so values of another type are an
    error rather than silently ordered before or after all the others."""

    NUMBER = "number"  # integers and decimals, compared exactly
    TIMESTAMP = "timestamp"  # ISO-8601, compared as UTC instants
    TEXT = "text"  # compared as text


def type_of(value: str) -> CursorType:
    """The type a cursor value reads as (any value may also be read as TEXT)."""
    return (CursorType.NUMBER, CursorType.TIMESTAMP, CursorType.TEXT)[cursor_key(value)[0]]


def parse_instant(value: str) -> tuple[datetime, str] | None:
    """An ISO-8601 timestamp as an aware UTC instant (no offset: UTC) and the fraction digits
    past microseconds; None when `value` is not one."""
    extra = ""
    fine = _FINE.fullmatch(value)
    if fine is not None:
        digits = fine[2]
        value, extra = f"{fine[1]}.{digits[:6]}{fine[3]}", digits[6:].rstrip("0")
    if len(value) < 10 or not value[:4].isdigit():
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at, extra


def cursor_key(value: str, ctype: CursorType | None = None) -> CursorKey:
    """The sort key of a cursor value: "9" < "10", 2^53 < 2^53 + 1, and
    "2026-01-01T01:00:00+02:00" < "2026-01-01T00:00:00.5Z"; with `ctype` TEXT, text order."""
    if ctype is CursorType.TEXT:
        return (2, _ZERO, _EPOCH, value)
    if _NUMBER.fullmatch(value):
        try:
            return (0, Decimal(value), _EPOCH, "")
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
            pass
    instant = parse_instant(value)
    if instant is not None:
        return (1, _ZERO, instant[0], instant[1])
    return (2, _ZERO, _EPOCH, value)


def canonical(value: str, ctype: CursorType | None = None) -> str:
    """One spelling per value, for ids and dedupe: equal keys give equal text. An instant as
    `YYYY-MM-DDTHH:MM:SS[.fraction]Z` in UTC (trailing zeros dropped, so "…T00:00:00Z",
    "…T00:00:00.000+00:00" and "…T01:00:00+01:00" are all "…T00:00:00Z"); a number in plain
    notation without trailing zeros ("1.50" is "1.5", "1e2" is "100"); text (and any value
    of a TEXT cursor) as it is."""
    kind, number, instant, rest = cursor_key(value, ctype)
    if kind == 0:
        if number == number.to_integral_value():
            return str(int(number))
        return format(number.normalize(), "f")
    if kind == 1:
        fraction = f"{instant.microsecond:06d}{rest}".rstrip("0")
        return instant.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"
    return value


def lower_bound(cursor: str, lag_s: float) -> str:
    """The inclusive lower bound of the next run: `cursor` minus the look-back (timestamps)."""
    if not lag_s:
        return cursor
    instant = parse_instant(cursor)
    if instant is None:
        return cursor  # not a timestamp: no look-back possible
    return iso_utc(instant[0] - timedelta(seconds=lag_s))
