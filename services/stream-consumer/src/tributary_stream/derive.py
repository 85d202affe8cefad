"""Running the `STREAM_PROCESSOR` over a batch: off the event loop, each record with a deadline.

The processor is user code: it may raise, return something DynamoDB cannot store, be slow or
hang. Each call runs in a bounded thread pool so the event loop (lease renewal above all) never
waits on it; a call that outlives its deadline makes its record a failure ("timed out") and the
batch goes on. A thread cannot be stopped, so a hung call keeps its thread: with every thread
hung, every further record times out (and is quarantined) until they return.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import orjson

from tributary_stream.lander import Line
from tributary_stream.processing import ItemRefusedError, Processor, item_key, to_item
from tributary_stream.quarantine import describe


@dataclass
class Derived:
    """A batch's items by key (the last one wins) and the records that failed, with why."""

    items: dict[str, tuple[dict[str, Any], Line]] = field(default_factory=dict)
    failed: list[tuple[Line, str]] = field(default_factory=list)
    timeouts: int = 0


async def derive(
    processor: Processor, lines: Iterable[Line], executor: Executor | None, timeout_s: float
) -> Derived:
    """Apply `processor` to each envelope line, in order, each within `timeout_s`."""
    loop = asyncio.get_running_loop()
    out = Derived()
    for line in lines:
        envelope = orjson.loads(line.line)
        try:
            call = loop.run_in_executor(executor, processor, envelope)
            item = await asyncio.wait_for(call, timeout_s)
        except TimeoutError:
            out.timeouts += 1
            out.failed.append((line, f"STREAM_PROCESSOR timed out after {timeout_s:g} s"))
            continue
        except Exception as exc:  # noqa: BLE001 - user code: isolate the record
            out.failed.append((line, f"STREAM_PROCESSOR raised {describe(exc)}"))
            continue
        if item is None:
            continue
        try:
            to_item(item)
            out.items[item_key(item)] = (item, line)
        except ItemRefusedError as exc:
            out.failed.append((line, f"item not storable: {exc}"))
        except (RecursionError, orjson.JSONEncodeError) as exc:  # a cyclic or too deep item
            out.failed.append((line, f"item not storable: {describe(exc)}"))
    return out
