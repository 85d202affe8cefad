"""Many lease-table requests, a bounded number in flight at once."""

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
