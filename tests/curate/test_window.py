"""The bookmark's hour watermark: a run lists raw from the watermark on, the bookmark keeps only
the late-arrival window, and an object landing late in an hour inside it is still new."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson

from tributary.layout import Zone, object_key
from tributary.raw_writer import RawObject
from tributary.testing import MemoryRawWriter
from tributary_curate.bookmark import Bookmark
from tributary_curate.index import MemoryLakeIndex
from tributary_curate.window import advance, future_keys, hour_of, list_new

START = datetime(2026, 1, 1, tzinfo=UTC)
FORMAT = "year=%Y/month=%m/day=%d/hour=%H"


async def put(lake: MemoryRawWriter, hour: datetime, batch: str) -> str:
    key = object_key(Zone.RAW, "posts", hour, "api", batch)
    await lake.put(RawObject(key, b"", 0, batch, batch))
    return key


async def curate(
    index: MemoryLakeIndex, mark: Bookmark, late_hours: int, now: datetime | None = None
) -> tuple[Bookmark, int]:
    listing = await list_new(index, mark)
    hours = [datetime.strptime(h, FORMAT).replace(tzinfo=UTC) for h in map(hour_of, listing.listed)]
    since, processed = advance(mark, listing, late_hours, now or max(hours, default=START))
    return replace(mark, runs=mark.runs + 1, since=since, processed=processed), len(listing.new)


async def test_listing_and_bookmark_stay_bounded_and_late_objects_are_found() -> None:
    lake = MemoryRawWriter()
    index = MemoryLakeIndex(lake)
    mark = Bookmark("posts")
    sizes, listed = [], []
    for day in range(30):  # a month of hourly runs, 5 objects an hour
        for hour in range(24):
            at = START + timedelta(days=day, hours=hour)
            for n in range(5):
                await put(lake, at, f"d{day}h{hour}n{n}")
        before = index.calls
        mark, new = await curate(index, mark, late_hours=24)
        assert new == 5 * 24
        listed.append(index.calls - before)
        sizes.append(len(orjson.dumps(mark.document())))
    assert len(lake.objects) == 30 * 24 * 5
    # The bookmark holds ~the window (24 h + the last day), not the month.
    assert len(mark.processed) <= 5 * 24 * 2
    assert max(sizes[5:]) < 1.2 * min(sizes[5:])
    assert max(listed) == 1  # one page: the window and what is new, never the whole prefix
    # Late: an object in an hour inside the window is new; the watermark never moves back.
    late = await put(lake, START + timedelta(days=29, hours=2), "late")
    listing = await list_new(index, mark)
    assert listing.new == (late,)


async def test_a_bookmark_without_a_watermark_lists_everything_once() -> None:
    lake = MemoryRawWriter()
    index = MemoryLakeIndex(lake)
    keys = [await put(lake, START + timedelta(hours=h), f"b{h}") for h in range(10)]
    old = Bookmark.from_document({"dataset": "posts", "runs": 3, "processed": keys[:8]}, '"e"')
    assert old.since is None
    mark, new = await curate(index, old, late_hours=2)
    assert new == 2
    assert mark.since == "year=2026/month=01/day=01/hour=07"
    assert mark.processed == frozenset(keys[7:])
    again = Bookmark.from_document(orjson.loads(orjson.dumps(mark.document())), '"f"')
    assert (again.since, again.processed) == (mark.since, mark.processed)


async def test_a_raw_key_in_a_future_hour_does_not_move_the_watermark() -> None:
    """A writer whose clock runs a day ahead: its object is curated and reported, and an
    ordinary object landing afterwards in the next hour is still found."""
    lake = MemoryRawWriter()
    index = MemoryLakeIndex(lake)
    now = START + timedelta(hours=12, minutes=30)
    await put(lake, START + timedelta(hours=12), "a")
    mark, _ = await curate(index, Bookmark("posts"), late_hours=2, now=now)
    ahead = await put(lake, START + timedelta(days=1, hours=12), "future")
    listing = await list_new(index, mark)
    assert future_keys(listing, now) == (ahead,)
    mark, new = await curate(index, mark, late_hours=2, now=now)
    assert new == 1
    assert mark.since == "year=2026/month=01/day=01/hour=11"  # capped at now + 1 h, minus 2
    assert ahead in mark.processed  # not curated twice once time catches up
    normal = await put(lake, START + timedelta(hours=13), "normal")
    mark, new = await curate(index, mark, late_hours=2, now=now + timedelta(hours=1))
    assert new == 1
    later = await list_new(index, mark)
    assert normal in mark.processed
    assert later.new == ()
    # Time catches up with the future key: it stays curated once.
    day_later = START + timedelta(days=1, hours=12, minutes=5)
    mark, new = await curate(index, mark, late_hours=2, now=day_later)
    assert new == 0
    assert ahead in mark.processed
