"""Derived tables as Spark: the base joined to each dataset named (Glue's `Join.apply` followed
by a rename with the join's prefix), then the filter and the column list.

Every input is read whole from the curated zone (its current state when it declares one), so
the result is right whatever changed in an input since the last snapshot (a user renamed after
their posts were curated).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tributary.derived import DerivedSpec
from tributary_curate.current import require, without_partitions
from tributary_curate.transform import apply_filter


def joined_rows(spec: DerivedSpec, inputs: Mapping[str, DataFrame], table: str) -> DataFrame:
    """The derived table `table`: `inputs` holds each input dataset's rows (its current state
    when it declares one)."""
    rows = without_partitions(inputs[spec.base])
    for n, join in enumerate(spec.joins):
        right = without_partitions(inputs[join.dataset])
        what = f"derived {table} join {join.dataset}"
        require(rows, list(join.keys), what)
        require(right, list(join.keys.values()), what)
        taken = join.columns or [c for c in right.columns if not c.startswith("_")]
        require(right, taken, what)
        clash = [join.prefix + c for c in taken if join.prefix + c in rows.columns]
        if clash:
            raise ValueError(f"{what}: columns {clash} exist already; choose another prefix")
        keys = {right_key: f"_k{n}_{i}" for i, right_key in enumerate(join.keys.values())}
        side = right.select(
            *(F.col(k).alias(alias) for k, alias in keys.items()),
            *(F.col(c).alias(join.prefix + c) for c in taken),
        )
        condition: Column = reduce(
            lambda a, b: a & b,
            (rows[base_key] == side[keys[right_key]] for base_key, right_key in join.keys.items()),
        )
        rows = rows.join(side, condition, join.how.value).drop(*keys.values())
    rows = apply_filter(rows, spec.filter)
    if spec.columns:
        require(rows, spec.columns, f"derived {table} columns")
        rows = rows.select(*spec.columns)
    return rows
