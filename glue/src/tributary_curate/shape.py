"""A dataset's curated rows as the curate job makes them from raw lines, and the same steps over
no lines: the columns and types the dataset's curated files have, before it has any.

A snapshot table joins a dataset's curated files (`snapshot_inputs`). A left join's right side
with no files yet is `no_rows`: the typing and mapping the job runs on raw lines, run on none,
so the joined columns are null with the types they will have once the files arrive (the
snapshot's schema, its Glue columns and its DuckDB view do not change when they do).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tributary.dataset import Dataset
from tributary_curate.relationalize import parent_columns
from tributary_curate.transform import (
    VALUE,
    apply_mapping,
    check_lines,
    output_columns,
    typed_rows,
    with_partitions,
)

# What the job reads raw objects as (`spark.read.text` plus the raw key).
LINES = T.StructType([T.StructField(n, T.StringType()) for n in ("value", "raw_key")])


def raw_lines(spark: SparkSession, paths: list[str]) -> DataFrame:
    """The non-blank lines of raw objects (value, raw_key: the object's key in the lake).
    Blank lines are empty or spaces only (Spark's trim). Compared with "" rather than measured
    with `length`, which counts every character of every line."""
    raw_key = F.regexp_extract(F.input_file_name(), r"(raw/[a-z][a-z0-9_]*/year=.*)$", 1)
    lines = spark.read.text(paths).select("value", raw_key.alias("raw_key"))
    return lines.where(F.trim(F.col("value")) != "")


def mapped_rows(lines: DataFrame, dataset: Dataset, *, spark_rules: bool = False) -> DataFrame:
    """Raw lines (value, raw_key) → checked, typed, mapped rows with year/month/day, carrying
    `_problem` (null when the row is curated) and the ride-along columns."""
    rows = typed_rows(check_lines(lines, dataset, spark_rules=spark_rules), dataset)
    rows = apply_mapping(rows, dataset.name, dataset.curated)
    return with_partitions(rows, dataset.curated.partition_by, dataset.name)


def written_columns(rows: DataFrame, dataset: Dataset) -> DataFrame:
    """The columns of the dataset's curated files (and partitions): no ride-along columns, no
    relationalized arrays (they are child tables)."""
    return parent_columns(output_columns(rows), dataset)


def no_rows(spark: SparkSession, dataset: Dataset) -> DataFrame:
    """The dataset's curated table with no rows: its columns and types from the registry,
    through the same steps as its raw lines."""
    lines = spark.createDataFrame([], LINES)
    return written_columns(mapped_rows(lines, dataset).drop(VALUE), dataset)
