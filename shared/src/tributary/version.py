"""Versions of mutable records: the `<id>@<version>` envelope id every writer makes for a dataset
that declares `version_field` (DESIGN, "Versions of mutable records").

The version part is one spelling per value, so the API, the stream consumer and the importer give
one version of one record the same id however the producer spelled it: an instant in UTC as
`YYYY-MM-DDTHH:MM:SS[.fraction]Z` (trailing zeros dropped: "…T00:00:00Z", "…T00:00:00.000+00:00"
and "…T01:00:00+01:00" are all "…T00:00:00Z"), a number in plain notation ("1.50" is "1.5"),
text as it is. The importer's cursor ids (`tributary_importer.cursor.canonical`) spell instants
and numbers the same way, so a version imported and the same version POSTed are one id.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tributary.schema import FieldType

# ISO-8601 date-time with a fraction finer than microseconds (which datetime cannot hold).
_FINE = re.compile(r"(.*[T ]\d{2}:\d{2}:\d{2})\.(\d{7,})(.*)")
# Already in the one spelling (the common case: producers send UTC with Z): returned as it is.
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d*[1-9])?Z")


def canonical_instant(value: str) -> str | None:
    """`value` (ISO-8601; no offset: UTC) as `YYYY-MM-DDTHH:MM:SS[.fraction]Z` in UTC, digits
    past microseconds kept; None when it is not a timestamp."""
    if _CANONICAL.fullmatch(value) and value[:4] != "0000":
        return value
    extra = ""
    fine = _FINE.fullmatch(value)
    if fine is not None:
        digits = fine[2]
        value, extra = f"{fine[1]}.{digits[:6]}{fine[3]}", digits[6:].rstrip("0")
    if len(value) < 10 or not value[:4].isdigit():
        return None
    try:
        at = datetime.fromisoformat(value)
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    fraction = f"{at.microsecond:06d}{extra}".rstrip("0")
    # Not strftime: the f-string measured ≈ 1.5× faster (bench/version_id.py, BENCHMARKS.md).
    text = (
        f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}"
    )
    return text + (f".{fraction}" if fraction else "") + "Z"


def canonical_number(value: int | float) -> str:
    """A JSON number in plain notation without trailing zeros (`1e2` is "100", 1.50 is "1.5")."""
    if isinstance(value, int):
        return str(value)
    try:
        number = Decimal(repr(value))
    except InvalidOperation:  # inf/nan: JSON has none, but a Python caller may pass one
        return repr(value)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def version_text(value: Any, kind: FieldType) -> str | None:
    """The version part of an envelope id for a `version_field` value of type `kind`; None for
    a missing or null value, an object or an array (the record then keeps its plain id, and
    fails validation: a version field is required)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if not value:
            return None
        if kind is FieldType.TIMESTAMP:
            return canonical_instant(value) or value
        return value
    if isinstance(value, int | float):
        return canonical_number(value)
    return None


def versioned_id(record_id: str, version: str | None) -> str:
    """`<id>@<version>`, or the plain id when there is no version."""
    return record_id if version is None else f"{record_id}@{version}"
