"""Data-quality rules (DQDL rule types) through the curate job's command line on moto: each rule
passing and failing, the results in the bookmark and as EMF; a `block` rule keeps the run from
publishing (exit 2, the rule and its figure), and once relaxed the next run publishes those
rows exactly once. `IsUnique` over the whole curated table, on the in-memory lake."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pyspark.sql import SparkSession

from tests.conftest import lake_settings
from tests.curate.lake import envelope, land
from tests.curate.test_job import Harness, curated_rows
from tests.curate.test_wire import cli
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary.quality import parse_rule
from tributary.s3_writer import S3RawWriter
from tributary.testing import FakeClock, MemoryMetrics
from tributary_curate.bookmark import S3BookmarkStore
from tributary_curate.failures import CurateConfigError
from tributary_curate.quality import QualityBlockedError
from tributary_stack.moto import MotoServer
from tributary_stack.status import quality_verdicts

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)

REGISTRY = """
datasets:
  items:
    id_field: id
    version_field: updated_at
    schema:
      fields:
        id: {type: integer, required: true}
        name: {type: string, required: true}
        price: {type: number, minimum: 0}
        updated_at: {type: timestamp, required: true}
    curated:
      partition_by: updated_at
    quality:
RULES
"""

# (rule, passes on the ten rows of `items()`, figure)
RULES: list[tuple[str, bool, float]] = [
    ("RowCount = 10", True, 10),
    ("RowCount > 10", False, 10),
    ('IsComplete "name"', True, 1.0),
    ('IsComplete "price"', False, 0.9),
    ('Completeness "price" >= 0.9', True, 0.9),
    ('Completeness "price" > 0.95', False, 0.9),
    ('IsUnique "name"', True, 1.0),
    ('IsUnique "id"', False, 0.8),  # item 1 in two versions: 8 of 10 values occur once
    (
        'ColumnValues "name" in ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"]',
        True,
        1,
    ),
    ('ColumnValues "price" between 0 and 5', False, 0.3),  # DQDL: 0 and 5 on the bounds fail
    ('ColumnValues "price" != 100', True, 1.0),  # DQDL: a negated rule passes the null row
    ('ColumnValues "price" not in [5, 6]', False, 0.8),  # ... and so does `not in`
    ('ColumnValues "price" not in [5, 6, NULL]', False, 0.7),  # unless the list names NULL
    ('ColumnValues "price" in [0, 1, 2, 3, 5, 6, 7, 8, 9, NULL]', True, 1.0),  # NULL allowed
    ('ColumnValues "name" in ["n0", "n1", EMPTY]', False, 0.2),
    ('ColumnValues "price" between 0 and 5 with threshold >= 0.3', True, 0.3),
    ('ColumnValues "price" between -1 and 10', False, 0.9),  # all but the null row
    ('DataFreshness "updated_at" <= 24 hours', False, 0.9),
    ('DataFreshness "updated_at" <= 24 hours with threshold >= 0.9', True, 0.9),
    ('DataFreshness "updated_at" between 2 days and 5 days', False, 0.1),
]


def registry_file(tmp: Path, rules: list[tuple[str, str]]) -> Path:
    lines = "\n".join(
        f"      - {orjson.dumps({'rule': r, 'on_failure': f}).decode()}" for r, f in rules
    )
    path = tmp / "datasets.yaml"
    path.write_text(REGISTRY.replace("RULES", lines))
    return path


def items(now: datetime) -> list[bytes]:
    """Ten rows: item 1 in two versions, one price missing, one row three days old."""
    out = []
    for i in range(10):
        at = now - (timedelta(days=3) if i == 9 else timedelta(hours=1, minutes=i))
        record: dict[str, Any] = {"id": 1 if i == 9 else i, "name": f"n{i}", "price": float(i)}
        if i == 4:
            del record["price"]
        record["updated_at"] = at.isoformat().replace("+00:00", "Z")
        rid = f"{record['id']}@{record['updated_at']}"
        out.append(envelope("items", rid, record, now.isoformat().replace("+00:00", "Z")))
    return out


def cli_env(moto: MotoServer, lake: Any, tmp: Path, registry: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "LAKE_BUCKET": lake.lake_bucket,
        "GLUE_DATABASE": lake.glue_database,
        "DATASETS_CONFIG": str(registry),
        "CURATE_WORK_DIR": str(tmp / "work"),
        "CURATE_QUERY_CACHE": str(tmp / "cache"),
        "LOG_LEVEL": "WARNING",
    }


def status_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`make status`'s entry point."""
    return subprocess.run(
        [sys.executable, "-m", "tributary_stack", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def emf(stderr: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stderr.splitlines() if line.startswith('{"_aws"')]


@pytest.mark.timeout(600)
async def test_each_rule_passes_and_fails_through_the_cli(moto: MotoServer, tmp_path: Path) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    now = datetime.now(UTC)
    registry = registry_file(tmp_path, [(rule, "warn") for rule, _, _ in RULES])
    env = cli_env(moto, lake, tmp_path, registry)
    async with AwsClients(lake) as clients:
        s3 = await clients.s3()
        await land(S3RawWriter(s3, lake.lake_bucket), "items", now, "q1", items(now))
        run = cli(env, "run", "--dataset", "items")
        assert run.returncode == 0, run.stderr  # warn rules report; the run publishes
        mark = await S3BookmarkStore(s3, lake.lake_bucket).get("items")
    results = {r["rule"]: r for r in mark.last_run["quality"]}
    assert list(results) == [rule for rule, _, _ in RULES]
    for rule, passes, figure in RULES:
        assert results[rule]["passed"] is passes, rule
        assert results[rule]["figure"] == pytest.approx(figure), rule
        assert results[rule]["on_failure"] == "warn"
    assert mark.last_run["curated"] == 10
    (counts,) = [d for d in emf(run.stderr) if "QualityRulesFailed" in d]
    failing = sum(not passes for _, passes, _ in RULES)
    assert (counts["dataset"], counts["QualityRulesFailed"]) == ("items", failing)
    assert counts["QualityRulesPassed"] == len(RULES) - failing
    assert counts["QualityRunsBlocked"] == 0
    figures = {d["rule"]: d["QualityRuleFigure"] for d in emf(run.stderr) if "rule" in d}
    assert figures['Completeness "price" > 0.95'] == pytest.approx(0.9)


@pytest.mark.timeout(600)
async def test_a_blocked_run_publishes_nothing_and_the_relaxed_rerun_publishes_once(
    moto: MotoServer, tmp_path: Path
) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    now = datetime.now(UTC)
    strict = [("RowCount > 0", "block"), ('Completeness "price" > 0.95', "block")]
    env = cli_env(moto, lake, tmp_path, registry_file(tmp_path, strict))
    async with AwsClients(lake) as clients:
        s3 = await clients.s3()
        writer = S3RawWriter(s3, lake.lake_bucket)
        await land(writer, "items", now, "q1", items(now))
        blocked = cli(env, "run", "--dataset", "items")
        assert blocked.returncode == 2, blocked.stderr
        assert 'Completeness "price" > 0.95: 0.9000 over 10 rows (failed, block)' in blocked.stderr
        named = blocked.stderr.split("blocked the run:")[1].split(". Nothing was published")[0]
        assert "RowCount" not in named  # only the failed block rule is named
        assert await writer.keys("curated/items/") == []
        bookmarks = S3BookmarkStore(s3, lake.lake_bucket)
        mark = await bookmarks.get("items")
        assert (mark.runs, mark.processed) == (0, frozenset())  # the raw object stays new
        assert [q["passed"] for q in mark.last_error["quality"]] == [True, False]
        assert any(d.get("QualityRunsBlocked") == 1 for d in emf(blocked.stderr))
        # The bound on "retried next run": raw expires RawRetentionDays after it lands.
        hour = f"{now:year=%Y/month=%m/day=%d/hour=%H}"
        assert mark.last_error["oldest_raw"] == hour
        kept = "kept RawRetentionDays (90 by default) after they land"
        assert f"{kept} (the oldest landed in hour {hour})" in blocked.stderr
        # `make status` (its entry point, on the same moto) shows the block and its backlog.
        shown = status_cli(
            {
                **env,
                "STREAM_NAME": lake.stream_name,
                "LEASE_TABLE": lake.lease_table,
                "STATE_TABLE": lake.state_table,
            }
        )
        assert shown.returncode == 0, shown.stderr
        table = [line.split() for line in shown.stdout.splitlines()]
        assert any(r[:2] == ["items", "Completeness"] and "BLOCKED" in r for r in table), (
            shown.stdout
        )
        assert "items is BLOCKED by a quality rule" in shown.stdout

        relaxed = [("RowCount > 0", "block"), ('Completeness "price" >= 0.9', "block")]
        env = cli_env(moto, lake, tmp_path, registry_file(tmp_path, relaxed))
        published = cli(env, "run", "--dataset", "items")
        assert published.returncode == 0, published.stderr
        again = cli(env, "run", "--dataset", "items")
        assert again.returncode == 0, again.stderr
        assert "nothing new" in again.stderr
        mark = await bookmarks.get("items")
        assert mark.runs == 1
        assert mark.last_error == {}
        assert all(q["passed"] for q in mark.last_run["quality"])
        rows = await read_curated(writer)
    expected = sorted(orjson.loads(line)["id"] for line in items(now))
    assert sorted(r["_id"] for r in rows) == expected  # each row exactly once


async def read_curated(writer: S3RawWriter) -> list[dict[str, Any]]:
    import io

    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for key in await writer.keys("curated/items/"):
        rows += pq.read_table(io.BytesIO(await writer.get(key))).to_pylist()
    return rows


async def test_is_unique_spans_the_curated_table_and_a_redelivered_row_counts_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    registry = DatasetRegistry.from_file(registry_file(tmp_path, [('IsUnique "name"', "block")]))
    harness = Harness(spark, tmp_path, registry)
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    hour = datetime(2026, 3, 2, 8, tzinfo=UTC)
    first = items(now)
    await land(harness.lake, "items", hour, "b1", first)
    metrics = MemoryMetrics()
    await harness.job(clock=FakeClock(now), metrics=metrics).run(registry["items"])
    # A redelivery of an already curated row (same envelope id) is not a repeated value.
    await land(harness.lake, "items", hour, "b2", first[:1])
    again = await harness.job(clock=FakeClock(now)).run(registry["items"])
    assert (again.duplicates, again.quality[0]["passed"]) == (1, True)
    # A re-POST under a curated row's envelope id with other content (first arrival wins: it
    # will be dropped) is judged by the curated row, not by its own value ("n1" is taken).
    changed = orjson.loads(first[0])
    changed["data"]["name"] = "n1"
    await land(harness.lake, "items", hour, "b2b", [orjson.dumps(changed)])
    retry = await harness.job(clock=FakeClock(now)).run(registry["items"])
    assert (retry.duplicates, retry.quality[0]["passed"]) == (1, True), retry.quality
    # A new row whose name a curated row already has: unique within its run, not in the table.
    new = orjson.loads(first[0])
    new["data"]["updated_at"] = "2026-03-02T08:30:00Z"
    new["id"] = f"0@{new['data']['updated_at']}"
    await land(harness.lake, "items", hour, "b3", [orjson.dumps(new)])
    with pytest.raises(QualityBlockedError, match=r'IsUnique "name": 0\.8182 over 11 rows'):
        await harness.job(clock=FakeClock(now)).run(registry["items"])
    assert len(curated_rows(harness.lake, "items")) == 10
    assert harness.bookmarks.bookmarks["items"].last_error["quality"][0]["passed"] is False


async def test_a_rule_naming_a_missing_column_fails_the_run_saying_which(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The backstop behind the registry's own check (which refuses such a rule at load,
    tests/shared/test_quality_rules.py): a dataset built past it still fails cleanly."""
    registry = DatasetRegistry.from_file(registry_file(tmp_path, [('IsComplete "name"', "warn")]))
    harness = Harness(spark, tmp_path, registry)
    dataset = replace(registry["items"], quality=(parse_rule('IsComplete "nope"'),))
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    await land(harness.lake, "items", datetime(2026, 3, 2, 8, tzinfo=UTC), "b1", items(now))
    with pytest.raises(CurateConfigError, match=r"names column 'nope'.*_id"):
        await harness.job(clock=FakeClock(now)).run(dataset)
    assert curated_rows(harness.lake, "items") == []
    assert "nope" in harness.bookmarks.bookmarks["items"].last_error["reason"]


async def test_a_later_failure_of_another_kind_keeps_the_block_in_the_bookmark(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Blocked, then the next run fails on its config before the rules run: nothing published
    in between, so `make status` must still show the dataset BLOCKED, not the last good run."""
    registry = DatasetRegistry.from_file(
        registry_file(tmp_path, [('Completeness "price" > 0.95', "block")])
    )
    harness = Harness(spark, tmp_path, registry)
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    await land(harness.lake, "items", datetime(2026, 3, 2, 8, tzinfo=UTC), "b1", items(now))
    with pytest.raises(QualityBlockedError):
        await harness.job(clock=FakeClock(now)).run(registry["items"])
    blocked = dict(harness.bookmarks.bookmarks["items"].last_error)
    dataset = registry["items"]
    broken = replace(
        dataset, curated=dataset.curated.model_copy(update={"cast": {"price": "nope"}})
    )
    later = FakeClock(now + timedelta(hours=1))
    with pytest.raises(CurateConfigError):
        await harness.job(clock=later).run(broken)
    error = harness.bookmarks.bookmarks["items"].last_error
    assert error["at"] > blocked["at"]
    assert "nope" in error["reason"].lower()
    assert error["quality"] == blocked["quality"]
    assert (error["quality_at"], error["oldest_raw"]) == (blocked["at"], blocked["oldest_raw"])
    rows = quality_verdicts({}, error)
    assert [r[4] for r in rows] == ["BLOCKED"]
    assert rows[0][5] == blocked["at"]
