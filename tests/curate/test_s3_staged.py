"""The S3-staged job (what runs on Glue) end to end on moto: stores on S3 and the Glue catalog,
staging in s3://<lake>/_staging/curate/<dataset>/<run id>/ (CURATE_STAGING=s3); a first run, a
run with only duplicates, a cast failure and non-ISO timestamps, a crash after publishing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession

from tests.conftest import DATASETS_CONFIG, lake_settings
from tests.curate.lake import envelope, land, post
from tributary.aws import AwsClients
from tributary.batch import decode_ndjson_gz
from tributary.bootstrap import bootstrap
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary_curate.job import CurateJob
from tributary_curate.runner import Lake, staging_factory
from tributary_curate.settings import CurateSettings
from tributary_stack.moto import MotoServer

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
HOUR = datetime(2026, 3, 1, 12, tzinfo=UTC)


def item(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"item {i}", "price": i + 0.5, "updated_at": "2026-03-01T10:00:00Z"}


class S3Harness:
    def __init__(
        self,
        spark: SparkSession,
        settings: CurateSettings,
        lake: Lake,
        work: Path,
        clients: AwsClients,
    ) -> None:
        self.spark, self.settings, self.lake, self.work = spark, settings, lake, work
        self.clients = clients

    def job(self, step: Any = None) -> CurateJob:
        kw = {"step": step} if step else {}
        return CurateJob(
            self.spark,
            self.lake.writer,
            self.lake.bookmarks,
            self.lake.catalog,
            staging_factory(self.settings, self.lake, self.work, on_glue=False),
            SystemClock(),
            f"s3://{self.settings.lake_bucket}",
            index=self.lake.index,
            claims=self.lake.claims,
            **kw,
        )

    async def keys(self, prefix: str) -> list[str]:
        return await self.lake.writer.keys(prefix)

    async def rows(self, dataset: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for key in await self.keys(f"curated/{dataset}/"):
            rows += pq.read_table(io.BytesIO(await self.lake.writer.get(key))).to_pylist()
        return rows

    async def quarantined(self, dataset: str) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for key in await self.keys(f"quarantine/{dataset}/"):
            body = await self.lake.writer.get(key)
            lines += [orjson.loads(x) for x in decode_ndjson_gz(body)]
        return lines


@pytest.fixture
async def harness(
    moto: MotoServer, spark: SparkSession, tmp_path: Path
) -> AsyncIterator[S3Harness]:
    aws = lake_settings(moto.endpoint)
    await bootstrap(aws, shards=1)
    settings = CurateSettings.model_validate(
        {
            "AWS_ENDPOINT_URL": aws.aws_endpoint_url,
            "LAKE_BUCKET": aws.lake_bucket,
            "GLUE_DATABASE": aws.glue_database,
            "AWS_MAX_ATTEMPTS": 2,
            "CURATE_STAGING": "s3",
        }
    )
    async with AwsClients(settings) as clients:
        lake = await Lake.open(clients, settings)
        yield S3Harness(spark, settings, lake, tmp_path / "work", clients)


async def test_first_run_then_only_duplicates_publishes_nothing(
    harness: S3Harness, registry: DatasetRegistry
) -> None:
    lines = [envelope("items", str(i), item(i)) for i in range(1, 11)]
    lines.append(envelope("items", "11", {**item(11), "price": 1e12}))  # does not fit decimal(10,2)
    lines.append(envelope("items", "12", {**item(12), "updated_at": "20260301T100000"}))
    lines.append(envelope("items", "13", {**item(13), "updated_at": "2026-W09-7"}))
    lines.append(envelope("items", "14", {**item(14), "price": "x"}))  # invalid at the validator
    await land(harness.lake.writer, "items", HOUR, "b1", lines)
    first = await harness.job().run(registry["items"])
    assert (first.curated, first.quarantined) == (12, 2)
    rows = {r["_id"]: r for r in await harness.rows("items")}
    assert sorted(rows, key=int) == [str(i) for i in (*range(1, 11), 12, 13)]
    assert rows["12"]["updated_at"] == datetime(2026, 3, 1, 10)
    assert rows["13"]["updated_at"] == datetime(2026, 3, 1)  # ISO week 9, Sunday
    reasons = {q["id"]: q["errors"] for q in await harness.quarantined("items")}
    assert reasons["11"] == [{"field": "price", "message": "cannot cast to decimal(10,2)"}]
    assert reasons["14"][0]["field"] == "data.price"
    assert await harness.keys("_staging/") == []  # the run's prefix is gone
    mark = await harness.lake.bookmarks.get("items")
    staging = f"s3://{harness.settings.lake_bucket}/_staging/curate/items/"
    assert mark.last_run["staging"].startswith(staging)
    assert mark.last_run["staging"].removeprefix(staging).rstrip("/") == mark.last_run["run_id"]
    assert await harness.lake.claims.read("items") is None  # released

    before = await harness.keys("")
    dupes = [envelope("items", str(i), item(i)) for i in (1, 2, 3)]
    await land(harness.lake.writer, "items", HOUR, "b2", dupes)  # a full-refresh re-import
    again = await harness.job().run(registry["items"])
    assert (again.run, again.curated, again.duplicates, again.files) == (2, 0, 3, 0)
    after = await harness.keys("")
    assert sorted(set(after) - set(before)) == [
        "raw/items/year=2026/month=03/day=01/hour=12/api-b2.ndjson.gz"
    ]
    assert len(await harness.rows("items")) == 12


async def test_crash_after_publish_then_rerun_curates_each_record_once(
    harness: S3Harness, registry: DatasetRegistry
) -> None:
    class Crash(Exception):
        pass

    async def crash(name: str) -> None:
        if name == "after_publish":
            raise Crash(name)

    lines = [envelope("comments", str(i), c(i)) for i in range(1, 21)]
    await land(harness.lake.writer, "comments", HOUR, "b1", lines)
    with pytest.raises(Crash):
        await harness.job(crash).run(registry["comments"])
    assert len(await harness.rows("comments")) == 20  # published, bookmark not moved
    assert await harness.lake.claims.read("comments") is None
    rerun = await harness.job().run(registry["comments"])
    assert (rerun.run, rerun.curated, rerun.duplicates) == (1, 0, 20)
    ids = [r["_id"] for r in await harness.rows("comments")]
    assert sorted(ids, key=int) == [str(i) for i in range(1, 21)]
    assert await harness.keys("_staging/") == []


def c(i: int) -> dict[str, Any]:
    return {"postId": 1 + i % 3, "id": i, "email": f"u{i}@example.com", "body": f"comment {i}"}


async def test_a_registry_change_reaches_the_catalog_through_the_job(
    harness: S3Harness, registry: DatasetRegistry
) -> None:
    """posts gains a field in the registry: the next run's Glue table (on moto) has the column,
    and every partition's StorageDescriptor, the old day's too, agrees with the table."""
    day1, day2 = datetime(2026, 3, 1, 8, tzinfo=UTC), datetime(2026, 3, 2, 8, tzinfo=UTC)
    first = envelope("posts", "1", post(1), "2026-03-01T08:00:00Z")
    await land(harness.lake.writer, "posts", day1, "b1", [first])
    await harness.job().run(registry["posts"])
    config = yaml.safe_load(DATASETS_CONFIG.read_text())
    config["datasets"]["posts"]["schema"]["fields"]["tags"] = {"type": "string"}
    changed = DatasetRegistry.from_yaml(yaml.safe_dump(config))
    tagged = envelope("posts", "2", post(2, tags="a,b"), "2026-03-02T08:00:00Z")
    await land(harness.lake.writer, "posts", day2, "b2", [tagged])
    await harness.job().run(changed["posts"])
    glue, database = await harness.clients.glue(), harness.settings.glue_database
    table = (await glue.get_table(DatabaseName=database, Name="posts"))["Table"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert ("tags", "string") in columns
    parts = (await glue.get_partitions(DatabaseName=database, TableName="posts"))["Partitions"]
    assert sorted(p["Values"][2] for p in parts) == ["01", "02"]
    for part in parts:
        assert [(c["Name"], c["Type"]) for c in part["StorageDescriptor"]["Columns"]] == columns
    rows = {r["_id"]: r for r in await harness.rows("posts")}
    assert rows["2"]["tags"] == "a,b"
