"""Time as a collaborator, so tests can drive it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time for timestamps and a monotonic clock for durations."""

    def now(self) -> datetime:
        """The current UTC time (timezone-aware). Used for `received_at` and partitions."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards. Used for expiry and rate limits."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()


def iso_utc(moment: datetime) -> str:
    """`2026-11-26T20:19:00.123Z`: millisecond precision, always UTC, `Z` suffix."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
