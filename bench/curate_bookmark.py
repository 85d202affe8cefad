"""Benchmark what a curate run pays before Spark starts: reading the bookmark, listing raw,
finding what is new, writing the bookmark back — with 1k, 10k and 100k raw objects already
processed and 10 new ones in the newest hour. The write rate is fixed (`RATE` objects an hour):
more objects done means a longer retention (≈4, 42 and 417 days), as a lake that grows older.
A cost independent of retention stays flat down the table.

- ours: the hour watermark + late window (`tributary_curate.window`, CURATE_LATE_HOURS=72):
  ListObjectsV2 from the watermark on, a bookmark of the window's keys;
- baseline (the previous design, same run): list all of `raw/<dataset>/`, a bookmark holding
  every processed key of the retention.
In memory (`MemoryLakeIndex` counts S3 calls as S3 pages them, 1,000 keys a page; +1 GET and
+1 PUT of the bookmark each). Median of interleaved rounds.
Run: `python bench/curate_bookmark.py [--rounds R]`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from report import Report, Table, met, save  # noqa: E402
from tributary.layout import Zone, object_key  # noqa: E402
from tributary.raw_writer import RawObject  # noqa: E402
from tributary.table import render  # noqa: E402
from tributary.testing import MemoryRawWriter  # noqa: E402
from tributary_curate.bookmark import Bookmark  # noqa: E402
from tributary_curate.index import PAGE, MemoryLakeIndex  # noqa: E402
from tributary_curate.window import DEFAULT_LATE_HOURS, advance, list_new  # noqa: E402

RATE = 10  # raw objects an hour, the same for every retention
END = datetime(2026, 6, 1, tzinfo=UTC)
NEW = 10


class SortedIndex(MemoryLakeIndex):
    """S3 lists from `StartAfter` in key order: a bisect into the sorted keys, not a scan of
    every stored key (which would charge the in-memory fake's cost to the design)."""

    def __init__(self, lake: MemoryRawWriter) -> None:
        super().__init__(lake)
        self.refresh()

    def refresh(self) -> None:
        """Sort the stored keys (outside the timed part: S3 keeps them sorted)."""
        self._sorted = sorted(self._lake.objects)

    async def keys_after(self, prefix: str, start_after: str | None = None) -> list[str]:
        """The keys under `prefix` after `start_after`, counted as S3 pages them."""
        found = []
        for i in range(bisect.bisect_right(self._sorted, start_after or prefix), len(self._sorted)):
            if not self._sorted[i].startswith(prefix):
                break
            found.append(self._sorted[i])
        self.calls += max(1, -(-len(found) // PAGE))
        return found


def lake_of(done: int) -> tuple[MemoryRawWriter, list[str], list[str]]:
    """`done` objects at RATE an hour before END (retention = done / RATE hours), NEW at END."""
    lake = MemoryRawWriter()
    old, new = [], []
    hours = done // RATE
    for i in range(done):
        at = END - timedelta(hours=hours - i // RATE)
        key = object_key(Zone.RAW, "posts", at, "api", f"b{i:06d}")
        lake.objects[key] = RawObject(key, b"", 0, "", "")
        old.append(key)
    for i in range(NEW):
        key = object_key(Zone.RAW, "posts", END, "api", f"n{i:03d}")
        new.append(key)
    return lake, old, new


def add_new(lake: MemoryRawWriter, new: list[str]) -> None:
    for key in new:
        lake.objects[key] = RawObject(key, b"", 0, "", "")


async def ours(done: int) -> dict[str, float]:
    lake, _old, new = lake_of(done)
    index = SortedIndex(lake)
    mark, _ = await _ours_run(index, Bookmark("posts"))  # the state after earlier runs
    stored = orjson.dumps(mark.document())
    add_new(lake, new)
    index.refresh()
    index.calls = 0
    started = time.perf_counter()
    mark = Bookmark.from_document(orjson.loads(stored), '"e"')
    mark, found = await _ours_run(index, mark)
    body = orjson.dumps(mark.document())
    seconds = time.perf_counter() - started
    assert found == NEW, found
    return {"seconds": seconds, "calls": index.calls + 2, "bytes": len(body)}


async def _ours_run(index: MemoryLakeIndex, mark: Bookmark) -> tuple[Bookmark, int]:
    listing = await list_new(index, mark)
    since, processed = advance(mark, listing, DEFAULT_LATE_HOURS, END)
    return replace(mark, since=since, processed=processed), len(listing.new)


async def baseline(done: int) -> dict[str, float]:
    lake, old, new = lake_of(done)
    index = SortedIndex(lake)
    stored = orjson.dumps({"dataset": "posts", "runs": 1, "processed": sorted(old)})
    add_new(lake, new)
    index.refresh()
    started = time.perf_counter()
    doc = orjson.loads(stored)
    processed = frozenset(doc["processed"])
    listed = await index.keys_after("raw/posts/")
    fresh = sorted(set(listed) - processed)
    body = orjson.dumps({**doc, "processed": sorted((processed & set(listed)) | set(fresh))})
    seconds = time.perf_counter() - started
    assert len(fresh) == NEW
    return {"seconds": seconds, "calls": index.calls + 2, "bytes": len(body)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for done in (1_000, 10_000, 100_000):
        runs: dict[str, list[dict[str, float]]] = {"ours": [], "baseline": []}
        for _ in range(args.rounds):  # interleaved
            runs["baseline"].append(asyncio.run(baseline(done)))
            runs["ours"].append(asyncio.run(ours(done)))
        med = {
            k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "calls", "bytes")}
            for k, v in runs.items()
        }
        o, b = med["ours"], med["baseline"]
        rows.append(
            [
                f"{done:,}",
                f"{done / RATE / 24:.0f}",
                f"{o['seconds'] * 1000:.2f}",
                f"{b['seconds'] * 1000:.2f}",
                f"{o['seconds'] / b['seconds']:.3f}",
                f"{o['calls']:.0f}",
                f"{b['calls']:.0f}",
                f"{o['bytes']:,.0f}",
                f"{b['bytes']:,.0f}",
                f"{o['bytes'] / b['bytes']:.3f}",
            ]
        )
    headers = [
        "raw objects done",
        "retention days",
        "ours ms",
        "baseline ms",
        "time ratio",
        "ours S3 calls",
        "baseline S3 calls",
        "ours bookmark B",
        "baseline bookmark B",
        "bytes ratio",
    ]
    title = (
        f"Curate run planning, {NEW} new objects, median of {args.rounds} interleaved rounds "
        f"(late window {DEFAULT_LATE_HOURS} h, {RATE} raw objects an hour: retention grows)"
    )
    print(render(headers, rows, title=title))
    big = rows[-1]
    ratio = float(big[9])
    save(
        Report(
            name="curate_bookmark",
            setup=(
                "Bookmark read + raw listing + diff + bookmark write of one curate run, in "
                "memory (S3 calls counted as S3 pages them). **ours** = hour watermark + "
                "72 h late window; **baseline** = the previous design (full listing, every "
                "processed key in the bookmark). The write rate is fixed, so more objects done "
                "is a longer retention."
            ),
            tables=[Table(title, headers, rows)],
            headline=[
                [
                    "curate bookmark",
                    "bookmark bytes at 100k raw objects done",
                    big[7],
                    f"{big[8]} (full key set)",
                    big[9],
                    "≤ 0.05",
                    met(ratio <= 0.05),
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
