"""The curate command line on the embedded AWS: raw in moto's S3 → curated Parquet in S3,
bookmark in S3, table + partitions in moto's Glue, crawler started, DuckDB query over it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import DATASETS_CONFIG, REPO, lake_settings
from tests.curate.lake import envelope, land, post
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.s3_writer import S3RawWriter
from tributary_curate.bookmark import S3BookmarkStore
from tributary_stack.moto import MotoServer


def cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tributary_curate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def glue_script(
    args: dict[str, str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """The Glue job script, run as Glue runs it (`--NAME value` arguments)."""
    argv = [x for name, value in args.items() for x in (f"--{name}", value)]
    return subprocess.run(
        [sys.executable, str(REPO / "glue" / "scripts" / "curate_job.py"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
    )


@pytest.mark.timeout(600)
async def test_run_query_rerun_bookmark_and_catalog(moto: MotoServer, tmp_path: Path) -> None:
    lake = lake_settings(moto.endpoint)
    crawler = f"{lake.glue_database}-posts-curated"
    await bootstrap(lake, shards=1, crawlers={crawler: "posts"})
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "LAKE_BUCKET": lake.lake_bucket,
        "GLUE_DATABASE": lake.glue_database,
        "DATASETS_CONFIG": str(DATASETS_CONFIG),
        "CURATE_WORK_DIR": str(tmp_path / "work"),
        "CURATE_QUERY_CACHE": str(tmp_path / "cache"),
        "LOG_LEVEL": "WARNING",
    }
    async with AwsClients(lake) as clients:
        s3 = S3RawWriter(await clients.s3(), lake.lake_bucket)
        for day in (1, 2):
            hour = datetime(2026, 3, day, 10, tzinfo=UTC)
            at = f"2026-03-0{day}T10:00:00Z"
            lines = [
                envelope("posts", str(i), post(i), at) for i in range(day * 100, day * 100 + 50)
            ]
            lines.append(envelope("posts", f"bad{day}", post(1, title=7), at))
            await land(s3, "posts", hour, f"b{day}", lines)

        first = cli(env, "run", "--dataset", "posts")
        assert first.returncode == 0, first.stderr
        table = first.stdout.splitlines()
        assert table[0].split()[:3] == ["dataset", "run", "raw"]
        assert table[2].split()[:9] == ["posts", "1", "2", "102", "100", "0", "0", "2", "2"]

        query = cli(env, "query", "select count(*) as n, count(distinct _id) as ids from posts")
        assert query.returncode == 0, query.stderr
        assert query.stdout.splitlines()[2].split() == ["100", "100"]

        again = cli(env, "run", "--dataset", "posts")
        assert again.returncode == 0, again.stderr
        assert "nothing new" in again.stderr

        glue = await clients.glue()
        partitions = await glue.get_partitions(DatabaseName=lake.glue_database, TableName="posts")
        assert sorted(p["Values"] for p in partitions["Partitions"]) == [
            ["2026", "03", "01"],
            ["2026", "03", "02"],
        ]
        columns = (await glue.get_table(DatabaseName=lake.glue_database, Name="posts"))["Table"]
        names = [c["Name"] for c in columns["StorageDescriptor"]["Columns"]]
        assert names == ["_id", "_source", "_received_at", "userId", "id", "title", "body"]
        assert (await glue.get_crawler(Name=crawler))["Crawler"]["State"] in ("RUNNING", "READY")
        mark = await S3BookmarkStore(await clients.s3(), lake.lake_bucket).get("posts")
        assert mark.runs == 1
        assert len(mark.processed) == 2
        quarantine = await s3.keys("quarantine/posts/")
        assert len(quarantine) == 2  # one per raw object with a bad line


@pytest.mark.timeout(600)
async def test_glue_entry_script_runs_locally_with_the_registry_in_s3(
    moto: MotoServer, tmp_path: Path
) -> None:
    """The Glue job script without awsglue: same job, local session; Glue-style arguments,
    the dataset registry read from s3://."""
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    async with AwsClients(lake) as clients:
        s3 = await clients.s3()
        await s3.put_object(
            Bucket=lake.lake_bucket, Key="config/datasets.yaml", Body=DATASETS_CONFIG.read_bytes()
        )
        writer = S3RawWriter(s3, lake.lake_bucket)
        hour = datetime(2026, 3, 1, 10, tzinfo=UTC)
        await land(
            writer, "posts", hour, "b1", [envelope("posts", str(i), post(i)) for i in range(1, 11)]
        )
        result = glue_script(
            {
                "JOB_NAME": "curate",
                "LAKE_BUCKET": lake.lake_bucket,
                "GLUE_DATABASE": lake.glue_database,
                "DATASETS_CONFIG": f"s3://{lake.lake_bucket}/config/datasets.yaml",
                "DATASETS": "posts",
            },
            {**os.environ, "AWS_ENDPOINT_URL": moto.endpoint, "LOG_LEVEL": "WARNING"},
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert "'curated': 10" in result.stdout
        keys = await writer.keys("curated/posts/year=2026/month=03/day=01/")
        assert len(keys) >= 1
        assert all(k.endswith(".snappy.parquet") for k in keys)
