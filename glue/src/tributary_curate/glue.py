"""The curate job as a Glue 5.0 job (Spark 3.5, Python 3.11).

Job arguments (the deploy's addon sets them): `--LAKE_BUCKET`, `--GLUE_DATABASE`,
`--DATASETS_CONFIG` (an `s3://` URI or a path), optional `--DATASETS` (comma-separated),
`--CURATE_CRAWLER_NAME`, `--CURATE_LATE_HOURS`, `--CURATE_CLAIM_TTL_S`,
`--CURATE_SNAPSHOT_RETAIN_S`. Staging is always
`s3://<lake>/_staging/curate/<dataset>/<run id>/`. The tributary packages ship in a zip of
wheels in `--additional-python-modules` (`make glue-artifacts`);
`--job-bookmark-option job-bookmark-disable`: the job keeps its own bookmark in the lake (see
`tributary_curate.bookmark`). GlueContext / Job are used only when `awsglue` is importable;
anywhere else this runs the same job on a local session with local staging.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tributary.aws import AwsClients
from tributary.dataset import DatasetRegistry
from tributary.log import configure_logging
from tributary.s3_writer import S3RawWriter
from tributary_curate.runner import Lake, curate_datasets, staging_factory
from tributary_curate.settings import CurateSettings
from tributary_curate.spark import LazySession, configure

ARGUMENTS = ("LAKE_BUCKET", "GLUE_DATABASE", "DATASETS_CONFIG")
OPTIONAL = (
    "DATASETS",
    "CURATE_CRAWLER_NAME",
    "CURATE_LATE_HOURS",
    "CURATE_CLAIM_TTL_S",
    "CURATE_SNAPSHOT_RETAIN_S",
)


def job_arguments(argv: Sequence[str]) -> dict[str, str]:
    """`--NAME value` pairs, as Glue passes them."""
    found, items = {}, list(argv)
    for i, item in enumerate(items):
        if item.startswith("--") and i + 1 < len(items):
            found[item[2:]] = items[i + 1]
    return found


async def _registry(settings: CurateSettings, clients: AwsClients) -> DatasetRegistry:
    location = str(os.environ.get("DATASETS_CONFIG", settings.datasets_config))
    if not location.startswith("s3://"):
        return DatasetRegistry.from_file(Path(location))
    bucket, _, key = location[len("s3://") :].partition("/")
    body = await S3RawWriter(await clients.s3(), bucket).get(key)
    return DatasetRegistry.from_yaml(body.decode(), source=location)


async def _run(spark: Any, on_glue: bool, work: Path) -> int:
    settings = CurateSettings()
    async with AwsClients(settings) as clients:
        registry = await _registry(settings, clients)
        wanted = os.environ.get("DATASETS", "")
        names = [n.strip() for n in wanted.split(",") if n.strip()] or list(registry)
        lake = await Lake.open(clients, settings)
        staging = staging_factory(settings, lake, work, on_glue=on_glue)
        results, code = await curate_datasets(spark, settings, registry, names, lake, staging)
    for result in results:
        print(result.summary())
    return code


def main(argv: Sequence[str] = sys.argv) -> None:
    """Entry point of the Glue script."""
    args = job_arguments(argv)
    for name in (*ARGUMENTS, *OPTIONAL):
        if name in args:
            os.environ[name] = args[name]
    configure_logging("curate", os.environ.get("LOG_LEVEL", "INFO"))
    try:
        from awsglue.context import GlueContext  # type: ignore[import-not-found]
        from awsglue.job import Job  # type: ignore[import-not-found]
        from pyspark.context import SparkContext
    except ImportError:
        spark = LazySession()
        with tempfile.TemporaryDirectory() as tmp:
            code = asyncio.run(_run(spark, False, Path(tmp)))
        spark.stop()
        sys.exit(code)
    glue = GlueContext(SparkContext.getOrCreate())
    job = Job(glue)
    job.init(args.get("JOB_NAME", "tributary-curate"), args)
    code = asyncio.run(_run(configure(glue.spark_session), True, Path(tempfile.gettempdir())))
    if code:
        sys.exit(code)  # a failed run is not committed
    job.commit()
