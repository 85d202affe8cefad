"""The Spark session: Glue's when running on Glue, a local[*] one otherwise."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

# Settings the job relies on, on Glue and locally alike.
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    # `month=01` stays the text "01" when partitions are discovered (else it becomes 1).
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.parquet.compression.codec": "snappy",
    # A JSON object read as a map keeps the last of repeated keys, as orjson does (spark_rules).
    "spark.sql.mapKeyDedupPolicy": "LAST_WIN",
}


def local_session(cores: str = "*", shuffle_partitions: int = 8) -> SparkSession:
    """A local Spark session for the runner, tests and benchmarks (Python workers = this
    interpreter, so they see the same packages)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no public interface needed
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("tributary-curate")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.memory", os.environ.get("CURATE_DRIVER_MEMORY", "2g"))
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
        .config("spark.sql.inMemoryColumnarStorage.compressed", "false")
    )
    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


class LazySession:
    """A local session started on first use: a run with nothing new, or one that finds its
    dataset claimed by another run, ends without starting a JVM."""

    def __init__(self) -> None:
        self._session: SparkSession | None = None

    def __call__(self) -> SparkSession:
        """The session (started now if need be)."""
        if self._session is None:
            self._session = local_session()
        return self._session

    @property
    def started(self) -> bool:
        """Whether a session was started."""
        return self._session is not None

    def stop(self) -> None:
        """Stop the session if it was started."""
        if self._session is not None:
            self._session.stop()


def configure(session: SparkSession) -> SparkSession:
    """Apply `SESSION_CONF` to a session someone else built (Glue's)."""
    for key, value in SESSION_CONF.items():
        session.conf.set(key, value)
    return session
