"""Per-key token buckets: each key may make `rate` requests per second with bursts of `burst`."""

from __future__ import annotations

from tributary.clock import Clock


class TokenBucketLimiter:
    """Token buckets keyed by API key name, on a monotonic clock.

    State is per process: with N API workers or tasks, a key's effective limit is N × rate.
    """

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def acquire(self, key: str) -> float:
        """Take one token for `key`: 0.0 when allowed, else seconds until a token is available."""
        now = self._clock.monotonic()
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate
