"""Awaiting several things at once: calls with a bounded number in flight, and a sleep that
an event cuts short."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def bounded(limit: int, items: Iterable[T], call: Callable[[T], Awaitable[None]]) -> None:
    """`call(item)` for every item, at most `limit` at once, in order of start. The first
    error cancels the calls still running and is raised as itself (not in a group)."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with gate:
            await call(item)

    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
    except BaseExceptionGroup as errors:  # callers handle the TributaryError tree, not groups
        raise errors.exceptions[0]  # noqa: B904 (its own cause kept; the group is its context)


async def sleep_unless(
    seconds: float, sleep: Callable[[float], Awaitable[None]], *events: asyncio.Event
) -> None:
    """`sleep(seconds)`, over at once when any of `events` is set, before or while it sleeps
    (the sleep is then cancelled). What the sleep raises is raised here."""
    if any(event.is_set() for event in events):
        return
    sleeping = asyncio.ensure_future(sleep(seconds))
    waits = [sleeping, *(asyncio.ensure_future(event.wait()) for event in events)]
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    if sleeping in done and not sleeping.cancelled():
        sleeping.result()  # what the sleep raised, raised here
