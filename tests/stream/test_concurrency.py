"""`bounded`: at most `limit` calls in flight, every item called, the first error raised as
itself (the Worker's `except TributaryError` must still see it, not an ExceptionGroup)."""

from __future__ import annotations

import asyncio

import pytest

from tributary.errors import TransientError
from tributary_stream.concurrency import bounded


async def test_at_most_limit_calls_run_at_once_and_every_item_is_called() -> None:
    running, peak, done = 0, 0, []

    async def call(item: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        done.append(item)

    await bounded(4, range(20), call)
    assert peak == 4
    assert sorted(done) == list(range(20))


async def test_the_first_error_is_raised_as_itself() -> None:
    async def call(item: int) -> None:
        await asyncio.sleep(0)
        if item == 3:
            raise TransientError("throttled")

    with pytest.raises(TransientError, match="throttled"):
        await bounded(2, range(10), call)
