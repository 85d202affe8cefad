"""The registry's rules as Spark expressions (spark_rules) give the verdict and the field/message
list the Python validator gives, on generated lines: valid and invalid, nested, range and length
edges, unicode, timestamps at the range edges, big ints, nulls against missing fields, undeclared
fields, broken envelopes. Lines Spark leaves to Python must be few and of the named kinds."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from tributary.schema import SchemaSpec
from tributary_curate.spark_rules import ERRORS_COLUMN, PYTHON, VALID, java_pattern, with_verdict
from tributary_curate.transform import line_errors

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)

SCHEMA = SchemaSpec.model_validate(
    {
        "fields": {
            "id": {"type": "integer", "required": True, "minimum": 1, "maximum": 2**62},
            "score": {"type": "number", "minimum": -1.5, "maximum": 100},
            "name": {"type": "string", "required": True, "min_length": 2, "max_length": 5},
            "code": {"type": "string", "pattern": r"^[A-Z]{2}-[0-9]+$", "nullable": True},
            "kind": {"type": "string", "enum": ["a", "b'c", "é"]},
            "level": {"type": "any", "enum": [1, 2.5, True, "x"]},
            "flag": {"type": "boolean", "nullable": True},
            "at": {"type": "timestamp"},
            "meta": {"type": "any"},
            "tags": {
                "type": "array",
                "max_length": 3,
                "items": {"type": "string", "min_length": 1},
            },
            "geo": {
                "type": "object",
                "required": True,
                "additional_fields": "reject",
                "fields": {
                    "lat": {"type": "number", "required": True, "minimum": -90, "maximum": 90},
                    "city": {"type": "string", "nullable": True},
                },
            },
        },
        "additional_fields": "reject",
    }
)

OPEN = SchemaSpec.model_validate(
    {"fields": {"n": {"type": "integer", "minimum": 0}, "s": {"type": "string"}}}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**62, 2**62 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-1.5, -1.5000001, 100.0, 100.00001, 90.0, -90.0, 2.5, 1.0, 0.5]),
    st.text(max_size=7),
    st.sampled_from(["a", "b'c", "é", "x", "AB-12", "ab-1", "AB-1\n", "'\"", "\\", "😀😀"]),
    st.sampled_from(
        [
            "2026-05-01T10:00:00Z",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59.999999Z",
            "9999-12-31T23:30:00-01:00",
            "2026-02-30T00:00:00Z",
            "2026-05-01 10:00:00.123+02:00",
            "20260501T100000",
            "2026-W01-1",
            "2026-05-01",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
NAMES = ["id", "score", "name", "code", "kind", "level", "flag", "at", "meta", "tags", "geo"]


def geo() -> st.SearchStrategy[Any]:
    good = st.fixed_dictionaries(
        {"lat": st.floats(min_value=-90, max_value=90) | st.integers(-90, 90)},
        optional={"city": st.none() | st.text(max_size=4), "zip": st.text(max_size=3)},
    )
    return good | values


@st.composite
def records(draw: st.DrawFn) -> Any:
    good: dict[str, Any] = {
        "id": draw(st.integers(1, 2**62)),
        "name": draw(st.text(min_size=2, max_size=5)),
        "geo": draw(geo()),
    }
    for name in NAMES:
        if draw(st.integers(0, 4)) == 0:  # mostly valid, each field sometimes anything
            good[name] = draw(values)
        elif draw(st.integers(0, 6)) == 0:
            good.pop(name, None)
    if draw(st.integers(0, 8)) == 0:
        good[draw(st.text(max_size=4))] = draw(values)  # an undeclared field
    if draw(st.integers(0, 30)) == 0:
        return draw(values)  # data not an object
    return good


@st.composite
def lines(draw: st.DrawFn) -> str:
    envelope: dict[str, Any] = {
        "v": 1,
        "dataset": "things",
        "id": draw(st.text(min_size=1, max_size=3)),
        "source": "api",
        "received_at": "2026-05-01T10:00:00.000000Z",
        "data": draw(records()),
    }
    broken = draw(st.integers(0, 25))
    if broken == 1:
        envelope[draw(st.sampled_from(["v", "dataset", "id", "source", "received_at"]))] = draw(
            values
        )
    elif broken == 2:
        del envelope[draw(st.sampled_from(["v", "dataset", "data", "source"]))]
    elif broken == 3:
        envelope["dataset"] = draw(st.sampled_from(["other", "it's", "x\"y'z", "é"]))
    line = dumps(envelope)
    if broken == 4:
        line = draw(st.sampled_from([line[:-1], line + " x", line + "{}", "[1]", '"s"', "nul"]))
    elif broken == 5:
        line = line.replace(":", ": ", 2).replace(",", " ,\t", 2)  # other whitespace
    elif broken == 6:
        line = line[:-1] + ',"v":1.0}'  # a duplicate key: the last one wins
    return line


def dumps(value: Any) -> str:
    """Compact JSON, ints of any size (orjson stops at 64 bits)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def python_errors(schema: SchemaSpec, batch: list[str]) -> list[Any]:
    udf = line_errors("things", schema)
    (out,) = list(udf(iter([pd.Series(batch)])))
    return [None if e is None else orjson.loads(e) for e in out]


def spark_verdicts(spark: SparkSession, schema: SchemaSpec, batch: list[str]) -> list[Any]:
    df = spark.createDataFrame([(i, v) for i, v in enumerate(batch)], "i int, value string")
    df = with_verdict(df, "value", "things", schema)
    rows = df.select("i", VALID, ERRORS_COLUMN, PYTHON).orderBy("i").collect()
    return [(r[1], [e.asDict() for e in r[2] or []], r[3]) for r in rows]


def compare(spark: SparkSession, schema: SchemaSpec, batch: list[str]) -> int:
    """Assert Spark equals Python on every line it decides; the number it left to Python."""
    expected = python_errors(schema, batch)
    left = 0
    for line, want, (valid, errors, python) in zip(
        batch, expected, spark_verdicts(spark, schema, batch), strict=True
    ):
        if python:
            left += 1
            continue
        assert valid == (want is None), line
        if not valid:
            assert errors == want, line
    return left


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a Spark job per try
)
@given(st.lists(lines(), min_size=75, max_size=75))
def test_spark_rules_equal_the_python_validator(spark: SparkSession, batch: list[str]) -> None:
    # 4 batches of 75 generated lines: 300 examples, one Spark job per batch (a job costs
    # seconds: the rules are one wide projection).
    left = compare(spark, SCHEMA, batch)
    assert left <= len(batch) // 2


def test_edges(spark: SparkSession) -> None:
    def env(data: Any, **over: Any) -> str:
        e = {
            "v": 1,
            "dataset": "things",
            "id": "1",
            "source": "s",
            "received_at": "t",
            "data": data,
        }
        return dumps({**e, **over})

    batch = [
        env({"n": 0, "s": "x"}),
        env({"n": -1}),
        env({"n": "5"}),
        env({"n": 5.0}),
        env({"n": 2**64}),  # orjson: a float, so "must be integer, got number"
        env({"n": -(2**63)}),
        env({"n": None}),
        env({"s": 5}),
        env({"s": "5"}),
        env({"s": None}),
        env({"s": {"a": "b"}}),
        env({"s": ["a"]}),
        env({"s": True}),
        env({"extra": 1}),
        env([1, 2]),
        env(None),
        env("text"),
        env({}, v=True),
        env({}, v=2),
        env({}, v="1"),
        env({}, v=None),
        env({}, dataset=""),
        env({}, dataset="other"),
        env({}, id=7),
        '{"v":1,"dataset":"things","id":"1","source":"s","received_at":"t"}',
        '{"v":1,"dataset":"things","id":"1","source":"s","received_at":"t","data":{"s":"\\"q"}}',
    ]
    assert compare(spark, OPEN, batch) == 0
    python = [
        "not json",
        env({"n": 1}) + " x",
        env({"s": "X"}).replace("X", "\\ud83d\\ude00"),
        env({"n": 1}).replace("1}", "1e400}"),
    ]
    verdicts = spark_verdicts(spark, OPEN, python)
    assert [p for _v, _e, p in verdicts] == [True] * len(python)
    floats = SchemaSpec.model_validate({"fields": {"x": {"type": "number", "minimum": 0}}})
    # "must be >= 0, got -0.5" quotes a float's repr: Python words it; -1 Spark does
    verdicts = spark_verdicts(spark, floats, [env({"x": -0.5}), env({"x": -1})])
    assert [p for _v, _e, p in verdicts] == [True, False]
    assert verdicts[1][1] == [{"field": "data.x", "message": "must be >= 0, got -1"}]


def test_java_pattern_covers_a_safe_subset() -> None:
    assert java_pattern(r"^[A-Z]{2}-[0-9]+$") == r"(?d)^[A-Z]{2}\-[0-9]+$"
    assert java_pattern(r"a(?:b|c)*?\.") == r"(?d)a(?:b|c)*?\."
    for python_only in [r"\d+", r"(?P<x>a)", r"(?i)a", r"a{2,}", r"[[a]", "é", r"\bx"]:
        assert java_pattern(python_only) is None


def test_typed_from_the_rules_texts_equal_a_second_json_read(spark: SparkSession) -> None:
    from tributary.dataset import DatasetRegistry
    from tributary_curate.spark_rules import DATA_TEXTS
    from tributary_curate.transform import check_lines, typed_rows

    dataset = DatasetRegistry.from_yaml(
        "datasets:\n  things:\n    schema:\n      fields:\n"
        "        n: {type: integer}\n        x: {type: number}\n        s: {type: string}\n"
        "        b: {type: boolean, nullable: true}\n        at: {type: timestamp}\n"
    )["things"]
    records = [
        {"n": 1, "x": 1, "s": 'a"\\é', "b": True, "at": "2026-05-01T10:00:00+02:00"},
        {"n": 2**63 + 5, "x": -1.5e300, "s": "", "b": None},
        {"n": -(2**63), "x": 0.1, "b": False, "at": "20260501T100000"},
        {"s": 5},  # invalid: typed columns null, a problem
    ]
    batch = [
        dumps(
            {"v": 1, "dataset": "things", "id": str(i), "source": "s", "data": r}
            | {"received_at": "2026-05-01T10:00:00.000000Z"}
        )
        for i, r in enumerate(records)
    ]
    lines_df = spark.createDataFrame(
        [(v, "raw/things/k") for v in batch], "value string, raw_key string"
    )
    checked = check_lines(lines_df, dataset, spark_rules=True)
    assert DATA_TEXTS in checked.columns
    fast = typed_rows(checked, dataset).orderBy("_id").collect()
    slow = typed_rows(checked.drop(DATA_TEXTS), dataset).orderBy("_id").collect()
    assert fast == slow
    assert [r["_problem"] is None for r in fast] == [False, True, True, True]  # null _id first
