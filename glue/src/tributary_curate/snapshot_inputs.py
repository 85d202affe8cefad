"""What a snapshot table (`snapshots`) is computed from: which of its inputs must have curated
rows before it is, and the rows of each.

A current-state table needs its dataset's rows, a derived one its base's and those of each
dataset it inner-joins (without them it has no row at all). A left join's right side does not:
posts_with_users holds every curated post as soon as posts has any, its user columns null
(with the types they will have, `shape.no_rows`) until users has curated rows; the next run
after users' first curate run recomputes it (the snapshot records each input's curate run).
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import DataFrame, SparkSession

from tributary.dataset import Dataset, DatasetRegistry
from tributary.derived import JoinHow, Table, TableKind
from tributary_curate.current import latest_rows
from tributary_curate.derived import joined_rows
from tributary_curate.shape import no_rows


def required_inputs(registry: DatasetRegistry, table: Table) -> list[str]:
    """The inputs of `table` that must have curated rows before it is computed: all of a
    current-state table's; a derived table's base and the datasets it inner-joins."""
    if table.kind is not TableKind.DERIVED:
        return list(table.inputs)
    spec = registry.derived[table.name]
    inner = [j.dataset for j in spec.joins if j.how is JoinHow.INNER]
    return [n for n in table.inputs if n == spec.base or n in inner]


def input_rows(spark: SparkSession, dataset: Dataset, paths: list[str]) -> DataFrame:
    """A dataset's curated rows (its current state when it declares one); with no files yet
    (a left join's right side), no rows, with the columns its files will have."""
    if paths:
        rows = spark.read.option("mergeSchema", "true").parquet(*paths)
    else:
        rows = no_rows(spark, dataset)
    if dataset.curated.current is not None:
        rows = latest_rows(rows, dataset.curated.current, dataset.name)
    return rows


def table_rows(
    spark: SparkSession, registry: DatasetRegistry, table: Table, paths: Mapping[str, list[str]]
) -> DataFrame:
    """The rows of snapshot table `table` from its inputs' curated files."""
    if table.kind is TableKind.CURRENT:  # its dataset's current state
        dataset = registry[table.inputs[0]]
        return input_rows(spark, dataset, paths[dataset.name])
    inputs = {name: input_rows(spark, registry[name], paths[name]) for name in table.inputs}
    return joined_rows(registry.derived[table.name], inputs, table.name)
