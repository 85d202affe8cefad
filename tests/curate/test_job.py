"""The curate job on fakes (memory lake, bookmark, catalog) and local Spark: counts, dedupe,
bookmark, late data, crashes."""

from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from tests.curate.lake import envelope, land, post
from tributary.batch import decode_ndjson_gz
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.raw_writer import RawObject
from tributary.testing import FakeClock, MemoryRawWriter
from tributary_curate.bookmark import MemoryBookmarkStore
from tributary_curate.catalog import MemoryCatalog
from tributary_curate.claim import Claim, ClaimLostError, DatasetBusyError, MemoryClaimStore
from tributary_curate.failures import CurateConfigError
from tributary_curate.index import MemoryLakeIndex
from tributary_curate.job import CurateJob
from tributary_curate.staging import LocalStaging

# py4j leaves the sockets of collect() to the garbage collector
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
HOUR = datetime(2026, 3, 1, 12, tzinfo=UTC)


def curated_rows(lake: MemoryRawWriter, dataset: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key, obj in sorted(lake.objects.items()):
        if key.startswith(f"curated/{dataset}/"):
            rows += pq.read_table(io.BytesIO(obj.body)).to_pylist()
    return rows


def quarantined(lake: MemoryRawWriter, dataset: str) -> list[dict[str, Any]]:
    lines = []
    for key, obj in lake.objects.items():
        if key.startswith(f"quarantine/{dataset}/"):
            lines += [orjson.loads(x) for x in decode_ndjson_gz(obj.body)]
    return lines


class Harness:
    def __init__(self, spark: SparkSession, tmp: Path, registry: DatasetRegistry) -> None:
        self.lake = MemoryRawWriter()
        self.bookmarks = MemoryBookmarkStore()
        self.catalog = MemoryCatalog()
        self.claims = MemoryClaimStore()
        self.index = MemoryLakeIndex(self.lake)
        self.registry = registry
        self.spark = spark
        self.tmp = tmp
        self.runs = 0

    def job(self, step: Any = None, clock: Any = None, **kw: Any) -> CurateJob:
        self.runs += 1
        if step:
            kw["step"] = step
        return CurateJob(
            self.spark,
            self.lake,
            self.bookmarks,
            self.catalog,
            lambda dataset, run_id: LocalStaging(self.tmp / dataset / run_id, self.lake),
            clock or FakeClock(datetime(2026, 3, 2, 9, tzinfo=UTC)),
            "s3://lake",
            index=self.index,
            claims=self.claims,
            crawler_name=lambda d: f"db-{d}-curated",
            **kw,
        )


@pytest.fixture
def harness(spark: SparkSession, tmp_path: Path, registry: DatasetRegistry) -> Harness:
    return Harness(spark, tmp_path, registry)


async def test_valid_records_curated_once_invalid_quarantined_with_reasons(
    harness: Harness,
) -> None:
    lines = [envelope("posts", str(i), post(i)) for i in range(1, 21)]
    lines += [envelope("posts", "5", post(5))]  # a duplicate (a retried request)
    lines += [envelope("posts", "bad-1", post(99, userId="x"))]  # wrong type
    lines += [envelope("posts", "bad-2", {"id": 98})]  # missing fields
    lines += [b"{not json", envelope("events", "e1", {"type": "x"})]  # not ours
    await land(harness.lake, "posts", HOUR, "b1", lines)
    result = await harness.job().run(harness.registry["posts"])
    rows = curated_rows(harness.lake, "posts")
    assert sorted(r["_id"] for r in rows) == sorted(str(i) for i in range(1, 21))
    assert (result.lines, result.curated, result.duplicates, result.quarantined) == (25, 20, 1, 4)
    assert set(rows[0]) == {"_id", "_source", "_received_at", "id", "userId", "title", "body"}
    bad = quarantined(harness.lake, "posts")
    assert len(bad) == 4
    reasons = {b["id"]: b["errors"] for b in bad}
    assert reasons["bad-1"] == [{"field": "data.userId", "message": "must be integer, got string"}]
    assert {e["field"] for e in reasons["bad-2"]} == {"data.userId", "data.title", "data.body"}
    assert all(b["raw_key"].startswith("raw/posts/year=2026/") for b in bad)
    assert harness.catalog.partitions["posts"] == {("2026", "03", "01")}
    assert harness.catalog.crawls == ["db-posts-curated"]


async def test_blank_lines_are_skipped_and_every_other_line_is_judged(harness: Harness) -> None:
    """Only empty and space-only lines are not lines (Spark's trim); an envelope after spaces
    is one, a tab is not a blank, a broken `{` line is judged."""
    spaced = b"  " + envelope("posts", "2", post(2))
    lines = [envelope("posts", "1", post(1)), b"", b"   ", b"\t", spaced, b"{not json", b"  x"]
    await land(harness.lake, "posts", HOUR, "b1", lines)
    result = await harness.job().run(harness.registry["posts"])
    assert (result.lines, result.curated, result.quarantined) == (5, 2, 3)
    assert sorted(r["_id"] for r in curated_rows(harness.lake, "posts")) == ["1", "2"]
    bad = sorted(b["line"] for b in quarantined(harness.lake, "posts"))
    assert bad == ["\t", "  x", "{not json"]


async def test_rerun_with_nothing_new_writes_nothing_and_late_data_is_picked_up(
    harness: Harness,
) -> None:
    await land(harness.lake, "posts", HOUR, "b1", [envelope("posts", "1", post(1))])
    await harness.job().run(harness.registry["posts"])
    before = dict(harness.lake.objects)
    again = await harness.job().run(harness.registry["posts"])
    assert again.curated == 0
    assert harness.lake.objects == before
    # A late object in an old hour, carrying a new record and a duplicate of a curated one.
    old = datetime(2026, 2, 27, 3, tzinfo=UTC)
    late = [
        envelope("posts", "2", post(2), "2026-02-27T03:00:00Z"),
        envelope("posts", "1", post(1), "2026-03-01T12:30:00Z"),
    ]
    await land(harness.lake, "posts", old, "late", late)
    result = await harness.job().run(harness.registry["posts"])
    assert (result.raw_objects, result.curated, result.duplicates) == (1, 1, 1)
    assert sorted(r["_id"] for r in curated_rows(harness.lake, "posts")) == ["1", "2"]


@pytest.mark.parametrize("crash_at", ["after_write", "after_publish", "after_catalog"])
async def test_crash_at_any_step_then_rerun_curates_each_record_once(
    harness: Harness, crash_at: str
) -> None:
    class Crash(Exception):
        pass

    async def step(name: str) -> None:
        if name == crash_at:
            raise Crash(name)

    days = [datetime(2026, 3, d, 8, tzinfo=UTC) for d in (1, 2, 3)]
    for n, hour in enumerate(days):
        batch = [
            envelope("posts", str(i), post(i), f"{hour:%Y-%m-%dT%H}:00:00Z")
            for i in range(n * 10 + 1, n * 10 + 11)
        ]
        await land(harness.lake, "posts", hour, f"b{n}", batch)
    with contextlib.suppress(Crash):
        await harness.job(step).run(harness.registry["posts"])
    await harness.job().run(harness.registry["posts"])
    ids = [r["_id"] for r in curated_rows(harness.lake, "posts")]
    assert sorted(ids) == sorted(str(i) for i in range(1, 31))
    assert len(harness.catalog.partitions["posts"]) == 3


async def test_a_run_that_outlives_its_claim_publishes_nothing_after_the_takeover(
    harness: Harness,
) -> None:
    """Run A is cut off (its publish request and its renewals hang: a stalled connection, a
    paused process) past its claim's expiry; run B takes over and curates. When A's network
    comes back, its hung request must not land: every record is curated exactly once."""
    for n in range(3):
        day = datetime(2026, 3, n + 1, 8, tzinfo=UTC)
        at = f"{day:%Y-%m-%dT%H}:00:00Z"
        batch = [envelope("posts", str(i), post(i), at) for i in range(n * 5 + 1, n * 5 + 6)]
        await land(harness.lake, "posts", day, f"b{n}", batch)
    healed, cut = asyncio.Event(), asyncio.Event()

    class CutLake:  # A's view of the lake: its first curated upload hangs until healed
        def __getattr__(self, name: str) -> Any:
            return getattr(harness.lake, name)

        async def put(self, obj: RawObject) -> Any:
            if obj.key.startswith("curated/"):
                cut.set()
            if cut.is_set():
                await healed.wait()
            return await harness.lake.put(obj)

    class CutClaims:  # and so do its renewals and its release
        def __getattr__(self, name: str) -> Any:
            return getattr(harness.claims, name)

        async def replace(self, claim: Claim) -> Claim | None:
            if cut.is_set():
                await healed.wait()
            return await harness.claims.replace(claim)

        async def delete(self, claim: Claim) -> None:
            if cut.is_set():
                await healed.wait()
            await harness.claims.delete(claim)

    def job(lake: Any, claims: Any, claim_ttl_s: float) -> CurateJob:
        return CurateJob(
            harness.spark,
            lake,
            harness.bookmarks,
            harness.catalog,
            lambda d, r: LocalStaging(harness.tmp / d / r, harness.lake),
            SystemClock(),
            "s3://lake",
            index=harness.index,
            claims=claims,
            claim_ttl_s=claim_ttl_s,
        )

    # A's claim expires soon after it is cut off; B's outlasts any stall of a loaded machine.
    a = asyncio.create_task(job(CutLake(), CutClaims(), 3.0).run(harness.registry["posts"]))
    await asyncio.wait_for(cut.wait(), 120)
    # More lands meanwhile: B's files differ from A's (else create-only names would collide).
    for n in range(3):
        day = datetime(2026, 3, n + 1, 8, tzinfo=UTC)
        late = [envelope("posts", str(100 + n), post(100 + n), f"{day:%Y-%m-%dT%H}:00:00Z")]
        await land(harness.lake, "posts", day, f"late{n}", late)
    while True:  # B: refused until A's claim is free, then it curates everything
        try:
            await job(harness.lake, harness.claims, 20.0).run(harness.registry["posts"])
            break
        except DatasetBusyError:
            await asyncio.sleep(0.2)
    healed.set()
    with contextlib.suppress(ClaimLostError):
        await a
    ids = [r["_id"] for r in curated_rows(harness.lake, "posts")]
    assert sorted(ids) == sorted(str(i) for i in [*range(1, 16), 100, 101, 102])


async def test_a_stop_during_a_failing_spark_job_is_a_stop_not_a_config_failure(
    harness: Harness,
) -> None:
    """A Spark error at action time is the dataset's failure (exit 2), unless a stop was
    requested: then it is the cancellation's, raised as such (the command exits as stopped)."""
    await land(harness.lake, "posts", HOUR, "b1", [envelope("posts", "1", post(1))])
    posts = harness.registry["posts"]
    curated = posts.curated.model_copy(update={"filter": "title rlike '['"})
    bad = replace(posts, curated=curated)
    with pytest.raises(CurateConfigError, match="PatternSyntaxException"):
        await harness.job().run(bad)
    with pytest.raises(Py4JJavaError):
        await harness.job(stopping=lambda: True).run(bad)
    assert curated_rows(harness.lake, "posts") == []
    assert await harness.claims.read("posts") is None


async def test_quarantine_is_published_once_across_a_crash_and_a_rerun_in_a_later_hour(
    harness: Harness,
) -> None:
    """The run crashes after publishing; its rerun starts in the next hour. The quarantined
    lines are keyed by the raw object they came from, not the run's clock: still once."""

    class Crash(Exception):
        pass

    async def crash(name: str) -> None:
        if name == "after_publish":
            raise Crash(name)

    hour = datetime(2026, 3, 2, 8, tzinfo=UTC)
    for n in range(2):
        lines = [envelope("posts", str(n * 10 + i), post(n * 10 + i)) for i in range(1, 4)]
        lines += [envelope("posts", f"bad-{n}", post(99, userId="x")), b"{not json"]
        await land(harness.lake, "posts", hour, f"b{n}", lines)
    with contextlib.suppress(Crash):
        await harness.job(crash, FakeClock(datetime(2026, 3, 2, 9, 59, tzinfo=UTC))).run(
            harness.registry["posts"]
        )
    assert len(quarantined(harness.lake, "posts")) == 4
    await harness.job(clock=FakeClock(datetime(2026, 3, 2, 10, 1, tzinfo=UTC))).run(
        harness.registry["posts"]
    )
    bad = quarantined(harness.lake, "posts")
    assert len(bad) == 4
    keys = sorted(k for k in harness.lake.objects if k.startswith("quarantine/"))
    assert keys == [
        f"quarantine/posts/year=2026/month=03/day=02/hour=08/curate-api-b{n}.ndjson.gz"
        for n in range(2)
    ]
    assert sorted(r["_id"] for r in curated_rows(harness.lake, "posts")) == sorted(
        str(n * 10 + i) for n in range(2) for i in range(1, 4)
    )
