"""In-memory implementations of the side-effect interfaces, shipped for users' and our tests."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from tributary.errors import PermanentError, SinkUnavailableError
from tributary.metrics import Unit
from tributary.raw_writer import ObjectInfo, RawObject, WriteOutcome


class MemoryRawWriter:
    """`RawWriter` over a dict, with the same create-only semantics as S3.

    `fail_next(n)` makes the next `n` puts raise `SinkUnavailableError` (fault injection);
    `down = True` makes every call fail until set back; keys under a prefix in `denied` are
    refused for good, like an S3 AccessDenied (`PermanentError`).
    """

    def __init__(self) -> None:
        self.objects: dict[str, RawObject] = {}
        self.down = False
        self.denied: set[str] = set()
        self._failures_left = 0

    def fail_next(self, count: int) -> None:
        """Make the next `count` puts fail as if the store were unreachable."""
        self._failures_left = count

    def _check(self) -> None:
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")
        if self._failures_left:
            self._failures_left -= 1
            raise SinkUnavailableError("memory store put failed (fault injected)")

    async def put(self, obj: RawObject) -> WriteOutcome:
        """Store `obj` unless the key exists."""
        self._check()
        if any(obj.key.startswith(prefix) for prefix in self.denied):
            raise PermanentError(f"put {obj.key} refused (AccessDenied) (fault injected)")
        if obj.key in self.objects:
            return WriteOutcome.ALREADY_EXISTS
        self.objects[obj.key] = obj
        return WriteOutcome.WRITTEN

    async def head(self, key: str) -> ObjectInfo | None:
        """Size and metadata of a stored object."""
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")
        obj = self.objects.get(key)
        return None if obj is None else ObjectInfo(key, len(obj.body), obj.metadata())

    async def keys(self, prefix: str) -> list[str]:
        """Stored keys under `prefix`."""
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")
        return sorted(k for k in self.objects if k.startswith(prefix))

    async def get(self, key: str) -> bytes:
        """A stored body."""
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")
        if key not in self.objects:
            raise PermanentError(f"no object {key}")
        return self.objects[key].body

    async def ping(self) -> None:
        """Fails only while `down`."""
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")


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
