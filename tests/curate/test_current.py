"""The Spark of current-state and derived tables on a local session: the newest version wins
whatever order versions arrived in; joins keep or drop unmatched rows by `how`, prefix the
joined columns, and refuse a prefix that would overwrite a column."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pyspark.sql import SparkSession

from tributary.curated import CurrentSpec
from tributary.derived import DerivedSpec
from tributary_curate.current import latest_rows
from tributary_curate.derived import joined_rows

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def test_a_late_older_version_does_not_replace_the_newer(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [
            # (_id, _received_at, id, name, updated_at, year, month, day)
            ("7@v2", at(2), 7, "newer", at(1, 12), "2026", "03", "01"),
            ("7@v1", at(5), 7, "older, arrived last", at(1, 8), "2026", "03", "01"),
            ("8@v1", at(1), 8, "only", at(1, 8), "2026", "03", "01"),
            ("9@a", at(1), 9, "first", at(1, 8), "2026", "03", "01"),
            ("9@b", at(3), 9, "same instant, later arrival", at(1, 8), "2026", "03", "01"),
        ],
        "_id string, _received_at timestamp, id long, name string, updated_at timestamp, "
        "year string, month string, day string",
    )
    latest = latest_rows(rows, CurrentSpec(key="id", order_by="updated_at"), "items_current")
    assert "year" not in latest.columns  # a snapshot table is not partitioned
    got = {r["id"]: r["name"] for r in latest.collect()}
    assert got == {7: "newer", 8: "only", 9: "same instant, later arrival"}


def test_join_how_prefix_and_columns(spark: SparkSession) -> None:
    posts = spark.createDataFrame(
        [("1", 1, 10, "a"), ("2", 2, 20, "b"), ("3", 3, 99, "c")],
        "_id string, id long, userId long, title string",
    )
    users = spark.createDataFrame(
        [("10", 10, "Ann", "Paris"), ("20", 20, "Bob", "Oslo")],
        "_id string, id long, name string, address_city string",
    )
    spec: dict[str, Any] = {
        "base": "posts",
        "joins": [{"dataset": "users", "keys": {"userId": "id"}, "prefix": "user_"}],
    }
    left = joined_rows(DerivedSpec.model_validate(spec), {"posts": posts, "users": users}, "t")
    assert left.columns == [
        "_id",
        "id",
        "userId",
        "title",
        "user_id",
        "user_name",
        "user_address_city",
    ]
    assert sorted((r["id"], r["user_name"]) for r in left.collect()) == [
        (1, "Ann"),
        (2, "Bob"),
        (3, None),
    ]
    inner = {**spec, "joins": [{**spec["joins"][0], "how": "inner", "columns": ["name"]}]}
    inner["columns"] = ["id", "user_name"]
    rows = joined_rows(DerivedSpec.model_validate(inner), {"posts": posts, "users": users}, "t")
    assert sorted(tuple(r) for r in rows.collect()) == [(1, "Ann"), (2, "Bob")]
    clash = {**spec, "joins": [{**spec["joins"][0], "prefix": ""}]}
    with pytest.raises(ValueError, match="exist already"):
        joined_rows(DerivedSpec.model_validate(clash), {"posts": posts, "users": users}, "t")
