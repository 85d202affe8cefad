"""In-memory implementations of the side-effect interfaces, shipped for users' and our tests."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from tributary.memory_writer import MemoryRawWriter
from tributary.metrics import Unit

__all__ = ["FakeClock", "MemoryMetrics", "MemoryRawWriter"]


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        self._monotonic = 1000.0

    def now(self) -> datetime:
        """The fake wall-clock time."""
        return self._now

    def monotonic(self) -> float:
        """The fake monotonic time."""
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


class MemoryMetrics:
    """`Metrics` that keeps totals in a dict keyed by (name, sorted dimensions)."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.flushes = 0

    def add(self, name: str, value: float, unit: Unit = Unit.COUNT, **dimensions: str) -> None:
        """Add to a total."""
        self.totals[(name, tuple(sorted(dimensions.items())))] += value

    def gauge(self, name: str, value: float, unit: Unit = Unit.COUNT, **dimensions: str) -> None:
        """Remember the last value."""
        self.gauges[(name, tuple(sorted(dimensions.items())))] = value

    def total(self, name: str, **dimensions: str) -> float:
        """The total for `name` under exactly `dimensions`."""
        return self.totals.get((name, tuple(sorted(dimensions.items()))), 0.0)

    def flush(self) -> None:
        """Count flushes; totals are kept for inspection."""
        self.flushes += 1
