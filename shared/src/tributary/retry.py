"""Retrying a transient failure: capped exponential backoff with full jitter.

Retries of a failed call go through `retry`, with one exception: the stream consumer's worker
backs off on its own schedule before rerunning a failed shard consumer and after a failed
coordination round (`tributary_stream.worker`, `_backoff`). Other code sleeps for other reasons:
pacing (the importer's rate limiter), polling (the stream consumer between reads and after a
throttled read, bootstrap waiting for the stream), periodic flushes, and the `--loop` commands.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tributary.errors import RetriesExhaustedError, TransientError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure."""

    max_attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter delay before attempt `attempt + 1` (attempt counts from 1)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, ceiling)


async def retry(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    what: str = "operation",
) -> T:
    """Run `operation`, retrying it on `TransientError` as `policy` allows.

    A `TransientError` may carry `retry_after` (seconds) to ask for at least that long a pause.
    Permanent errors and anything else propagate at once. When attempts run out, raises
    `RetriesExhaustedError` chained to the last failure.
    """
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return await operation()
        except TransientError as exc:
            if attempt == policy.max_attempts:
                raise RetriesExhaustedError(
                    f"{what} still failing after {attempt} attempts: {exc}", attempts=attempt
                ) from exc
            pause = max(policy.delay(attempt), float(getattr(exc, "retry_after", 0.0) or 0.0))
            log.info(
                "retrying",
                extra={"what": what, "attempt": attempt, "pause_s": pause, "error": str(exc)},
            )
            await sleep(pause)
    raise AssertionError("unreachable: max_attempts must be >= 1")  # pragma: no cover
