"""Transformations on small DataFrames: flatten or keep, rename/cast/drop (a failed cast is
quarantined), filters, schema drift (carried or ignored), event-time partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tributary.dataset import DatasetRegistry
from tributary.envelope import encode_envelope
from tributary.schema import RecordValidator
from tributary_curate.transform import (
    PROBLEM,
    VALUE,
    apply_filter,
    apply_mapping,
    check_lines,
    first_arrivals,
    instant_micros,
    output_columns,
    typed_rows,
    with_partitions,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)

SCHEMA = """
    id_field: id
    schema:
      fields:
        id: {type: integer, required: true}
        name: {type: string, required: true}
        price: {type: string}
        shipped_at: {type: timestamp}
        address:
          type: object
          fields:
            city: {type: string}
            geo: {type: object, fields: {lat: {type: number}, lng: {type: number}}}
        tags: {type: array, items: {type: string}}
"""


def registry(curated: str = "") -> DatasetRegistry:
    block = f"    curated:\n{curated}" if curated else ""
    return DatasetRegistry.from_yaml(f"datasets:\n  orders:\n{SCHEMA}{block}")


def order(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"order {i}",
        "price": f"{i}.50",
        "shipped_at": f"2026-04-0{1 + i % 3}T08:00:00Z",
        "address": {"city": "Lyon", "geo": {"lat": 45.7, "lng": 4.8}},
        "tags": ["a", "b"],
        **extra,
    }


def lines(
    spark: SparkSession, records: list[dict[str, Any]], at: str = "2026-04-05T09:00:00Z"
) -> DataFrame:
    rows = [
        (encode_envelope("orders", str(r["id"]), "api", at, r).decode(), "raw/orders/k1.ndjson.gz")
        for r in records
    ]
    return spark.createDataFrame(rows, "value string, raw_key string")


def curate(
    spark: SparkSession, reg: DatasetRegistry, records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dataset = reg["orders"]
    checked = check_lines(lines(spark, records), dataset)
    rows = apply_mapping(typed_rows(checked, dataset), "orders", dataset.curated)
    rows = with_partitions(rows, dataset.curated.partition_by, "orders")
    bad = [orjson.loads(r[PROBLEM]) for r in rows.where(f"{PROBLEM} is not null").collect()]
    good = apply_filter(rows.where(f"{PROBLEM} is null"), dataset.curated.filter)
    out = output_columns(first_arrivals(good))
    return [r.asDict(recursive=True) for r in out.orderBy("_id").collect()], bad


def test_flatten_is_the_default(spark: SparkSession) -> None:
    rows, bad = curate(spark, registry(), [order(1)])
    assert bad == []
    assert rows[0]["address_city"] == "Lyon"
    assert rows[0]["address_geo_lat"] == 45.7
    assert rows[0]["tags"] == ["a", "b"]
    assert rows[0]["shipped_at"].isoformat().startswith("2026-04-02T08:00")
    assert (rows[0]["year"], rows[0]["month"], rows[0]["day"]) == ("2026", "04", "05")


def test_nested_kept_as_structs(spark: SparkSession) -> None:
    rows, _ = curate(spark, registry("      nested: keep\n"), [order(1)])
    assert rows[0]["address"] == {"city": "Lyon", "geo": {"lat": 45.7, "lng": 4.8}}


def test_rename_cast_drop_and_a_failed_cast_goes_to_quarantine(spark: SparkSession) -> None:
    mapping = (
        "      rename: {name: title, address_city: city}\n"
        "      cast: {price: 'decimal(10,2)'}\n"
        "      drop: [tags, address_geo_lat, address_geo_lng]\n"
    )
    rows, bad = curate(spark, registry(mapping), [order(1), order(2, price="n/a")])
    assert [r["_id"] for r in rows] == ["1"]
    assert set(rows[0]) == {
        "_id",
        "_source",
        "_received_at",
        "id",
        "title",
        "price",
        "shipped_at",
        "city",
        "year",
        "month",
        "day",
    }
    assert str(rows[0]["price"]) == "1.50"
    assert len(bad) == 1
    assert bad[0]["id"] == "2"
    assert bad[0]["errors"] == [{"field": "price", "message": "cannot cast to decimal(10,2)"}]
    assert orjson.loads(bad[0]["line"])["data"]["price"] == "n/a"


def test_filter_drops_rows(spark: SparkSession) -> None:
    rows, bad = curate(
        spark, registry("      filter: 'id % 2 = 0'\n"), [order(i) for i in range(1, 7)]
    )
    assert [r["id"] for r in rows] == [2, 4, 6]
    assert bad == []


@pytest.mark.parametrize("mode", ["ignore", "carry"])
def test_schema_drift_is_ignored_or_carried_never_a_crash(spark: SparkSession, mode: str) -> None:
    records = [order(1), order(2, coupon="SPRING", score=3)]
    rows, bad = curate(spark, registry(f"      extra_fields: {mode}\n"), records)
    assert bad == []
    assert [r["_id"] for r in rows] == ["1", "2"]
    if mode == "ignore":
        assert "_extra" not in rows[0]
        assert "coupon" not in rows[1]
    else:
        assert rows[0]["_extra"] == {}
        assert rows[1]["_extra"] == {"coupon": "SPRING", "score": "3"}


def test_event_time_partitions_and_a_row_without_one_is_quarantined(spark: SparkSession) -> None:
    rows, bad = curate(
        spark,
        registry("      partition_by: shipped_at\n"),
        [order(1), {k: v for k, v in order(2).items() if k != "shipped_at"}],
    )
    assert [(r["_id"], r["day"]) for r in rows] == [("1", "02")]
    assert [b["errors"][0]["field"] for b in bad] == ["shipped_at"]


def test_invalid_records_carry_field_and_reason(spark: SparkSession) -> None:
    dataset = registry()["orders"]
    checked = check_lines(lines(spark, [order(1, id="x"), order(2)]), dataset)
    problems = [orjson.loads(r[PROBLEM]) for r in checked.where(f"{PROBLEM} is not null").collect()]
    assert [p["errors"] for p in problems] == [
        [{"field": "data.id", "message": "must be integer, got string"}]
    ]


# ---- timestamps: the validator and the curated value agree ------------------------------------


@st.composite
def timestamp_texts(draw: st.DrawFn) -> str:
    """ISO-8601 forms `datetime.fromisoformat` may or may not accept, and non-timestamps."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.text(max_size=24))
    moment = draw(st.datetimes())  # years 1..9999: with an offset, an edge leaves the range
    if draw(st.booleans()):
        offset = timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60)))
        moment = moment.replace(tzinfo=timezone(offset))
    form = draw(st.sampled_from(["iso", "space", "basic", "date", "week", "z", "ms", "nanos"]))
    if form == "space":
        return moment.isoformat(sep=" ")
    if form == "basic":
        return moment.strftime("%Y%m%dT%H%M%S")
    if form == "date":
        return moment.date().isoformat()
    if form == "week":
        year, week, day = moment.isocalendar()
        return f"{year:04d}-W{week:02d}-{day}"
    if form == "z":
        return moment.replace(tzinfo=None).isoformat() + "Z"
    if form == "ms":
        return moment.isoformat(timespec="milliseconds")
    if form == "nanos":
        return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "789"
    return moment.isoformat()


def _instant(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


EDGES = [
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC
    "0001-01-01T00:00:00",
    "0001-01-01T00:00:00-01:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    "9999-12-31T23:00:00+01:00",
]


def test_timestamps_at_the_range_edges_agree_without_spark() -> None:
    """The validator accepts exactly the edge timestamps the curate parser gives an instant."""
    validator = RecordValidator(registry()["orders"].schema)
    for text in EDGES:
        accepted = validator.is_valid(order(1, shipped_at=text))
        assert accepted == (instant_micros(text) is not None), text


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(timestamp_texts(), min_size=1, max_size=40))
@example(texts=EDGES)
def test_validator_accepts_a_timestamp_iff_curated_holds_that_instant(
    spark: SparkSession, texts: list[str]
) -> None:
    reg = registry()
    dataset = reg["orders"]
    validator = RecordValidator(dataset.schema)
    records = [order(i, shipped_at=text) for i, text in enumerate(texts)]
    checked = check_lines(lines(spark, records), dataset)
    rows = typed_rows(checked, dataset).select(
        F.get_json_object(VALUE, "$.id").cast("int").alias("i"),  # _id is null on a problem
        F.col(PROBLEM).isNull().alias("ok"),
        F.unix_micros("shipped_at").alias("micros"),
    )
    got = {r["i"]: (r["ok"], r["micros"]) for r in rows.collect()}
    for i, text in enumerate(texts):
        ok, micros = got[i]
        accepted = validator.is_valid(records[i])
        assert accepted == (ok and micros is not None and micros == _instant(text)), (text, got[i])
