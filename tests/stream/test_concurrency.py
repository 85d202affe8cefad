"""`bounded`: at most `limit` calls in flight, every item called, the first error raised as
itself (the Worker's `except TributaryError` must still see it, not an ExceptionGroup).
`sleep_unless`: a sleep that any of its events ends, raising what the sleep raises."""

from __future__ import annotations

import asyncio

import pytest

from tributary.errors import TransientError
from tributary_stream.concurrency import bounded, sleep_unless


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


async def test_sleep_unless_sleeps_out_its_time_when_no_event_is_set() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    await sleep_unless(2.5, sleep, asyncio.Event(), asyncio.Event())
    assert slept == [2.5]


async def test_sleep_unless_ends_when_an_event_is_set_and_cancels_the_sleep() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def sleep(seconds: float) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never ends by itself
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.create_task(sleep_unless(3600, sleep, first, second))
    await asyncio.wait_for(started.wait(), 5)
    second.set()
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(cancelled.wait(), 5)  # the sleep does not go on in the background


async def test_sleep_unless_does_not_start_the_sleep_when_an_event_is_already_set() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    done = asyncio.Event()
    done.set()
    await sleep_unless(1, sleep, done)
    assert slept == []


async def test_sleep_unless_raises_what_the_sleep_raises() -> None:
    async def sleep(seconds: float) -> None:
        raise TransientError("the clock broke (fault injected)")

    with pytest.raises(TransientError, match="the clock broke"):
        await sleep_unless(1, sleep, asyncio.Event())
