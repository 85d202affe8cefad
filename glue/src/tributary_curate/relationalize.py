"""Relationalize (like Glue's `Relationalize`): each array-of-objects field a dataset names in
`curated.relationalize` becomes a child table `<dataset>_<field>`; the parent keeps its other
columns.

A child row is one element: `_id` (`<parent _id>#<position>`, so dedupe works as for any
dataset), `_parent_id` (the parent's `_id`), `_index` (the element's 0-based position in the
array as received), the parent's `_received_at`, the element's fields flattened to
`parent_child` columns, and the parent's year/month/day partition. A null or empty array has
no children; a null element has none either (its position is skipped, the others keep theirs).
Child tables are append-only and written in the same run as their parent, with the same
anti-join against what is already curated.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tributary.curated import NestedMode
from tributary.dataset import Dataset
from tributary.derived import child_table
from tributary.schema import SchemaSpec
from tributary_curate.outcome import ChildWritten
from tributary_curate.transform import (
    ID,
    PARTITION_COLUMNS,
    RECEIVED_AT,
    data_columns,
    not_yet_curated,
    output_columns,
    to_instant,
)

PARENT_ID, INDEX = "_parent_id", "_index"
ROWS_PER_FILE = 500_000
_ELEMENT, _POSITION = "_element", "_position"


def child_rows(parents: DataFrame, dataset: Dataset, field: str) -> DataFrame:
    """One row per non-null element of `parents[field]` (see the module docstring)."""
    if field not in parents.columns:
        raise ValueError(
            f"curated.relationalize of {dataset.name} names {field!r}, which is not a column "
            "after mapping (renamed or dropped?)"
        )
    declared = dataset.schema.fields[field].items
    assert declared is not None  # checked when the registry loads
    assert declared.fields
    exploded = parents.select(
        F.col(ID).alias(PARENT_ID),
        F.col(RECEIVED_AT),
        *PARTITION_COLUMNS,
        F.posexplode(F.col(field)).alias(_POSITION, _ELEMENT),  # null and [] give no rows
    ).where(F.col(_ELEMENT).isNotNull())
    columns = []
    for c in data_columns(SchemaSpec(fields=declared.fields), NestedMode.FLATTEN):
        column = F.col(f"{_ELEMENT}." + ".".join(f"`{p}`" for p in c.path))
        columns.append((to_instant(column) if c.timestamp else column).alias(c.name))
    return exploded.select(
        F.concat(F.col(PARENT_ID), F.lit("#"), F.col(_POSITION).cast("string")).alias(ID),
        PARENT_ID,
        F.col(_POSITION).alias(INDEX),
        RECEIVED_AT,
        *columns,
        *PARTITION_COLUMNS,
    )


def child_tables(dataset: Dataset) -> list[str]:
    """The child tables of `dataset`, in registry order."""
    return [child_table(dataset.name, f) for f in dataset.curated.relationalize]


def write_children(
    first: DataFrame,
    parents: DataFrame,
    dataset: Dataset,
    existing: dict[str, DataFrame | None],
    output: Callable[[str], str],
) -> tuple[ChildWritten, ...]:
    """Write each child table's new rows partitioned to staging `output(<table>)`: the elements
    of `parents` (the parent rows this run curates; a record whose `_id` is already curated
    brings no elements, whatever its array now holds), less the child ids already curated
    (`existing`, by table: a rerun after a crash between the child and parent uploads). The
    partitions declared are those of every first arrival's elements, so that rerun declares
    them too."""
    written = []
    for field, table in zip(dataset.curated.relationalize, child_tables(dataset), strict=True):
        rows = child_rows(output_columns(first), dataset, field)
        own = child_rows(output_columns(parents), dataset, field)
        fresh = not_yet_curated(own, existing.get(table)).persist()
        try:
            count = fresh.count()
            partitions = tuple(
                sorted(tuple(r) for r in rows.select(*PARTITION_COLUMNS).distinct().collect())
            )
            if count:
                tasks = max(1, -(-count // ROWS_PER_FILE))
                fresh.coalesce(tasks).write.partitionBy(*PARTITION_COLUMNS).parquet(
                    output(table), mode="overwrite", compression="snappy"
                )
            columns = tuple(
                (f.name, f.dataType.simpleString())
                for f in fresh.schema.fields
                if f.name not in PARTITION_COLUMNS
            )
        finally:
            fresh.unpersist()
        written.append(ChildWritten(table, count, partitions, columns))
    return tuple(written)


def parent_columns(rows: DataFrame, dataset: Dataset) -> DataFrame:
    """The parent table: every column but the relationalized arrays."""
    return rows.drop(*dataset.curated.relationalize)
