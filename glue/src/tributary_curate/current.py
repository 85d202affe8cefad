"""Current-state tables as Spark: `<dataset>_current`, the latest row of each key by `order_by`
(a version that arrives late, older than one already curated, never wins; ties go to the later
arrival). A pure function of the dataset's whole curated table, published as a snapshot.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from tributary.curated import CurrentSpec
from tributary_curate.transform import ID, PARTITION_COLUMNS, RECEIVED_AT


def require(rows: DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise ValueError(f"{what} names unknown column(s) {missing}; columns: {rows.columns}")


def without_partitions(rows: DataFrame) -> DataFrame:
    """A snapshot table is not partitioned (it is replaced whole): drop year/month/day."""
    return rows.drop(*PARTITION_COLUMNS)


def latest_rows(rows: DataFrame, spec: CurrentSpec, table: str) -> DataFrame:
    """One row per `spec.key`: the greatest `spec.order_by` (nulls last), then the latest
    `_received_at`, then the greatest `_id`, so the answer does not depend on file order."""
    require(rows, [spec.key, spec.order_by], f"curated.current of {table}")
    order = Window.partitionBy(spec.key).orderBy(
        F.col(spec.order_by).desc_nulls_last(), F.col(RECEIVED_AT).desc(), F.col(ID).desc()
    )
    ranked = rows.where(F.col(spec.key).isNotNull()).withColumn("_n", F.row_number().over(order))
    return without_partitions(ranked.where("_n = 1").drop("_n"))
