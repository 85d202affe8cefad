"""`make status`'s data-quality table, from bookmarks in moto's S3: the last published run's
results, or a blocked run's when it came later; rules not run yet are listed too."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.conftest import DATASETS_CONFIG, lake_settings
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary_curate.bookmark import Bookmark, S3BookmarkStore
from tributary_stack.moto import MotoServer
from tributary_stack.status import quality_table


def result(rule: str, passed: bool, figure: float, on_failure: str = "warn") -> dict[str, object]:
    return {"rule": rule, "on_failure": on_failure, "figure": figure, "passed": passed, "rows": 10}


async def test_quality_table_shows_the_latest_verdicts(moto: MotoServer) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    registry = DatasetRegistry.from_file(DATASETS_CONFIG)
    async with AwsClients(lake) as clients:
        bookmarks = S3BookmarkStore(await clients.s3(), lake.lake_bucket)
        published = {
            "finished_at": "2026-03-01T10:00:00Z",
            "quality": [result("RowCount > 0", True, 10)],
        }
        await bookmarks.put(Bookmark("posts", runs=1, last_run=published))
        blocked = {
            "at": "2026-03-01T11:00:00Z",
            "reason": "quality rules of items blocked the run",
            "quality": [result('IsComplete "updated_at"', False, 0.9, "block")],
            "oldest_raw": "year=2026/month=03/day=01/hour=09",
        }
        await bookmarks.put(Bookmark("items", runs=1, last_run=published, last_error=blocked))
        text = await quality_table(bookmarks, registry, datetime(2026, 3, 11, 9, tzinfo=UTC))
    lines = text.splitlines()
    assert "Data quality" in lines[1]
    rows = [line.split() for line in lines[4:]]
    assert [
        "posts",
        "RowCount",
        ">",
        "0",
        "warn",
        "10",
        "10",
        "pass",
        "2026-03-01T10:00:00Z",
    ] in rows
    assert ["items", "IsComplete", '"updated_at"', "block", "0.9", "10", "BLOCKED"] in [
        r[:7] for r in rows
    ]
    # How long the blocked backlog has waited, against how long raw is kept.
    note = next(line for line in lines if line.startswith("items is BLOCKED"))
    assert "oldest waiting raw object landed 2026-03-01T09:00Z, 10.0 days ago" in note
    assert "RawRetentionDays (90 by default)" in note
    assert not any(line.startswith("posts is BLOCKED") for line in lines)
    assert any(r[:2] == ["comments", "IsUnique"] and "not run yet" in " ".join(r) for r in rows)
