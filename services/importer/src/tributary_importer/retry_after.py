"""`Retry-After` as a pause, for the vendor's pages and its token endpoint alike."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MIN_PAUSE_S = 0.2  # floor for Retry-After: 0 (dlt spun on it)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float:
    """`Retry-After` as seconds (delta-seconds or HTTP-date), at least `MIN_PAUSE_S`."""
    if not value:
        return MIN_PAUSE_S
    value = value.strip()
    if value.isdigit():
        return max(MIN_PAUSE_S, float(value))
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return MIN_PAUSE_S
    return max(MIN_PAUSE_S, (at - (now or datetime.now(UTC))).total_seconds())
