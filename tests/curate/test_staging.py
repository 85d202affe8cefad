"""The staging Glue uses (`on_glue=True`: Spark reads and writes `s3://` itself), on moto: what
Spark's committer leaves beside its output (`_SUCCESS`, checksums, an unfinished attempt under
`_temporary/`) is never published, and the run's prefix is removed after."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import lake_settings
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.raw_writer import RawObject
from tributary_curate.runner import Lake, staging_factory
from tributary_curate.settings import CurateSettings
from tributary_curate.staging import S3Staging, is_data_file
from tributary_stack.moto import MotoServer

WRITTEN = {  # what Spark's FileOutputCommitter leaves under one output, a task attempt unfinished
    "curated/_SUCCESS": False,
    "curated/year=2026/month=03/day=01/part-00000-a.c000.snappy.parquet": True,
    "curated/year=2026/month=03/day=01/.part-00000-a.c000.snappy.parquet.crc": False,
    "curated/_temporary/0/_temporary/attempt_1/year=2026/month=03/day=01/part-00001-b.c000"
    ".snappy.parquet": False,
    "curated/_temporary/0/task_2/year=2026/month=03/day=02/part-00002-c.snappy.parquet": False,
    "curated/year=2026/month=03/day=02/part-00003-d.c000.snappy.parquet": True,
    "curated/.spark-staging-1/year=2026/month=03/day=02/part-00004-e.snappy.parquet": False,
}


def test_data_files_are_those_under_no_underscore_or_dot_folder() -> None:
    for path, data in WRITTEN.items():
        assert is_data_file(path.removeprefix("curated/")) is data, path


async def test_glue_staging_publishes_only_spark_output_and_removes_the_run_prefix(
    moto: MotoServer, tmp_path: Path
) -> None:
    aws = lake_settings(moto.endpoint)
    await bootstrap(aws, shards=1)
    settings = CurateSettings.model_validate(
        {
            "AWS_ENDPOINT_URL": aws.aws_endpoint_url,
            "LAKE_BUCKET": aws.lake_bucket,
            "GLUE_DATABASE": aws.glue_database,
            "AWS_MAX_ATTEMPTS": 2,
        }
    )
    bucket = aws.lake_bucket
    async with AwsClients(settings) as clients:
        lake = await Lake.open(clients, settings)
        staging = staging_factory(settings, lake, tmp_path, on_glue=True)("posts", "run-1")
        other = staging_factory(settings, lake, tmp_path, on_glue=True)("posts", "run-0")
        assert isinstance(staging, S3Staging)
        prefix = "_staging/curate/posts/run-1/"
        assert staging.uri == f"s3://{bucket}/{prefix}"
        raw = "raw/posts/year=2026/month=03/day=01/hour=12/api-b1.ndjson.gz"
        assert await staging.inputs([raw]) == [f"s3://{bucket}/{raw}"]  # Spark reads S3 itself
        assert staging.output("curated") == f"s3://{bucket}/{prefix}curated"
        # Spark writes to s3:// here; what it leaves is what the committer leaves.
        for path in WRITTEN:
            await lake.writer.put(RawObject(f"{prefix}{path}", path.encode(), 0, "s", "s"))
        theirs = "_staging/curate/posts/run-0/curated/x.parquet"  # another run's staging
        await lake.writer.put(RawObject(theirs, b"", 0, "s", "s"))
        await staging.commit("curated")  # nothing to upload: Spark wrote to S3
        outputs = await staging.outputs("curated")
        wanted = sorted(p.removeprefix("curated/") for p, data in WRITTEN.items() if data)
        assert sorted(name for name, _body in outputs) == wanted
        assert all(body == f"curated/{name}".encode() for name, body in outputs)
        assert await staging.outputs("quarantine") == []
        await staging.cleanup()
        assert await lake.writer.keys(prefix) == []
        assert await lake.writer.keys("_staging/curate/posts/run-0/") != []  # not ours
        await other.cleanup()
