"""The chain rule: writers starting from one checkpoint land every record exactly once,
whatever batches each cuts and however their writes interleave."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tributary.batch import decode_ndjson_gz
from tributary.errors import PermanentError
from tributary.layout import Zone, object_key
from tributary.raw_writer import RawObject, WriteOutcome
from tributary.testing import MemoryMetrics, MemoryRawWriter
from tributary_stream.lander import Lander, Line
from tributary_stream.route import Target

POSTS = Target(Zone.RAW, "posts")
EVENTS = Target(Zone.RAW, "events")
AT = datetime(2026, 1, 1, tzinfo=UTC)


def lines_of(writer: MemoryRawWriter) -> Counter[bytes]:
    return Counter(line for obj in writer.objects.values() for line in decode_ndjson_gz(obj.body))


@st.composite
def cuts(draw: st.DrawFn, n: int) -> list[int]:
    """Batch boundaries over n records (sorted, ending at n)."""
    points = draw(st.sets(st.integers(1, n - 1), max_size=6)) if n > 1 else set()
    return [*sorted(points), n]


@given(st.data(), st.integers(1, 40))
@settings(max_examples=300, deadline=None)
async def test_two_writers_from_one_checkpoint_land_each_record_once(
    data: st.DataObject, n: int
) -> None:
    writer = MemoryRawWriter()
    targets = [data.draw(st.sampled_from([POSTS, EVENTS])) for _ in range(n)]
    records = [
        (t, Line(str(100 + i), AT, f'{{"i":{i},"t":"{t.dataset}"}}'.encode()))
        for i, t in enumerate(targets)
    ]
    # Each writer cuts the same record sequence into its own batches (a zombie and the new
    # owner, or a crashed run and its replay), and lands them in order; the two interleave.
    plans = []
    for _ in range(2):
        bounds, start, batches = data.draw(cuts(n)), 0, []
        for end in bounds:
            batches.append(records[start:end])
            start = end
        plans.append(batches)
    landed: list[dict[str, str]] = [{}, {}]
    landers = [Lander(writer, "shardId-000000000000", MemoryMetrics()) for _ in range(2)]
    progress = [0, 0]
    while progress[0] < len(plans[0]) or progress[1] < len(plans[1]):
        w = data.draw(st.sampled_from([i for i in (0, 1) if progress[i] < len(plans[i])]))
        batch = plans[w][progress[w]]
        progress[w] += 1
        for target in (POSTS, EVENTS):
            await landers[w].land(target, [ln for t, ln in batch if t == target], landed[w])
    assert lines_of(writer) == Counter(line.line for _, line in records)


async def test_adopted_object_reaching_past_the_batch_is_remembered() -> None:
    writer = MemoryRawWriter()
    lines = [Line(str(s), AT, f'{{"s":{s}}}'.encode()) for s in range(10, 20)]
    first = Lander(writer, "shardId-000000000000", MemoryMetrics())
    await first.land(POSTS, lines, {})  # one object covering 10..19
    landed: dict[str, str] = {}
    second = Lander(writer, "shardId-000000000000", MemoryMetrics())
    await second.land(POSTS, lines[:3], landed)  # a smaller cut from the same start
    assert landed == {"raw/posts": "19"}
    await second.land(POSTS, lines[3:], landed)  # everything else is skipped, not rewritten
    assert len(writer.objects) == 1


class YieldingWriter(MemoryRawWriter):
    """Gives the event loop a turn on every call, so a looping caller can be timed out."""

    async def put(self, obj: RawObject) -> WriteOutcome:
        await asyncio.sleep(0)
        return await super().put(obj)


async def test_an_object_that_would_make_no_progress_is_refused_not_looped_on() -> None:
    """A foreign object at a chain key whose metadata ends before its own first record:
    adopting it would retry the same key forever."""
    writer = YieldingWriter()
    shard = "shardId-000000000000"
    lines = [Line(str(s), AT, f'{{"s":{s}}}'.encode()) for s in range(10, 20)]
    key = object_key(Zone.RAW, "posts", AT, shard, "10")
    writer.objects[key] = RawObject(key, b"", 1, "3", "5")
    lander = Lander(writer, shard, MemoryMetrics())
    with pytest.raises(PermanentError, match="before its own first record 10"):
        await asyncio.wait_for(lander.land(POSTS, lines, {}), 5)
