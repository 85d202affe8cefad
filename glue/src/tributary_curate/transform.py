"""The curate job's transformations: pure functions from DataFrames to DataFrames.

raw lines ──check──▶ envelopes ──columns──▶ typed rows ──mapping──▶ ──filter──▶ ──dedupe──▶ curated
      ╰─ not JSON, not an envelope, invalid data, a failed cast, no partition value ─▶ quarantine

Validation runs the dataset registry's own validator (the one the API uses) in Python workers,
so a record is valid in curate exactly when it would have been valid at the API (spark_rules
holds the same rules as Spark expressions, opt-in: `check_lines(spark_rules=True)`).
Everything after it is Spark SQL. Nothing here touches storage: the job reads and writes around
these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.functions import pandas_udf

from tributary.curated import CuratedSpec, ExtraFields, NestedMode
from tributary.dataset import Dataset
from tributary.envelope import ENVELOPE_VERSION, BadEnvelopeError, Envelope
from tributary.schema import FieldSpec, FieldType, RecordValidator, SchemaSpec
from tributary_curate.spark_rules import (
    DATA_TEXTS,
    ENVELOPE_TEXTS,
    ERRORS_COLUMN,
    PYTHON,
    VALID,
    text_value,
    with_verdict,
)

STAGE = "curate"
ENVELOPE_COLUMNS = ("id", "source", "received_at")
# Curated names of the envelope fields: underscored, so they never collide with data fields.
ID, SOURCE, RECEIVED_AT = "_id", "_source", "_received_at"
PARTITION_COLUMNS = ("year", "month", "day")
EXTRA_COLUMN = "_extra"
# Columns that ride along until the end and are dropped before writing.
VALUE, RAW_KEY, PROBLEM = "_value", "_raw_key", "_problem"


@dataclass(frozen=True, slots=True)
class DataColumn:
    """One curated column before mapping: its name, where it comes from, its Spark type."""

    name: str
    path: tuple[str, ...]
    type: T.DataType
    timestamp: bool = False


# ---- quarantine lines -------------------------------------------------------------------------


ERRORS_TYPE = "array<struct<field:string,message:string>>"


def problem_line(dataset: str, errors: Column) -> Column:
    """The quarantine line for a row whose `errors` (array of field/message) is not empty, else
    null: where the record came from, why it failed, and the raw line itself."""
    line = F.to_json(
        F.struct(
            F.lit(ENVELOPE_VERSION).alias("v"),
            F.lit(dataset).alias("dataset"),
            F.lit(STAGE).alias("stage"),
            F.col(RAW_KEY).alias("raw_key"),
            *(F.get_json_object(VALUE, f"$.{n}").alias(n) for n in ENVELOPE_COLUMNS),
            errors.alias("errors"),
            F.col(VALUE).alias("line"),
        ),
        {"ignoreNullFields": "false"},  # every quarantine line has the same keys
    )
    return F.when(F.size(errors) > 0, line)


def line_errors(
    dataset: str, schema: SchemaSpec
) -> Callable[[Iterator[pd.Series]], Iterator[pd.Series]]:
    """A pandas UDF body: each raw line → the JSON list of its errors, or null when it is a
    valid envelope of `dataset` with valid data. Only the lines go to Python and only the
    (mostly null) answers come back; every other column stays in the JVM."""
    schema_json = schema.model_dump_json(exclude_unset=True)

    def errors_of(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        validator = RecordValidator(SchemaSpec.model_validate_json(schema_json))
        is_valid, dumps = validator.is_valid, orjson.dumps
        for values in batches:
            out: list[str | None] = []
            for value in values:
                if value is None:  # a line the Spark rules decided (spark_rules)
                    out.append(None)
                    continue
                try:  # the envelope's own parser: the same checks as everywhere else
                    envelope = Envelope.from_json(value)
                except BadEnvelopeError as exc:
                    out.append(dumps([{"field": "", "message": str(exc)}]).decode())
                    continue
                if envelope.dataset != dataset:
                    reason = f"envelope of dataset {envelope.dataset!r} under raw/{dataset}/"
                    out.append(dumps([{"field": "", "message": reason}]).decode())
                elif is_valid(envelope.data):
                    out.append(None)
                else:
                    errors = [
                        {"field": f"data.{e.field}" if e.field else "data", "message": e.message}
                        for e in validator.errors(envelope.data)
                    ]
                    out.append(dumps(errors).decode())
            yield pd.Series(out, dtype=object)

    return errors_of


def check_lines(lines: DataFrame, dataset: Dataset, *, spark_rules: bool = False) -> DataFrame:
    """`lines` (value, raw_key) → (_value, _raw_key, _problem): the problem is the quarantine
    line for a line that is not a valid envelope of `dataset` with valid data, else null.

    By default every line goes to the registry's validator in Python workers. With
    `spark_rules` the rules run as Spark expressions (spark_rules) and only the lines they leave
    to Python (`_rule_python`) go to that validator; not the job's default yet: at 1M lines it
    measured slower than the Python path (see BENCHMARKS.md, curate)."""
    errors = pandas_udf(line_errors(dataset.name, dataset.schema), T.StringType())  # type: ignore[call-overload]
    inputs = lines.select(F.col("value").alias(VALUE), F.col("raw_key").alias(RAW_KEY))
    if not spark_rules:
        found = F.coalesce(F.from_json(errors(F.col(VALUE)), ERRORS_TYPE), F.array())
        return inputs.withColumn(PROBLEM, problem_line(dataset.name, found))
    judged = with_verdict(inputs, VALUE, dataset.name, dataset.schema)
    python = F.col(PYTHON)
    from_python = F.from_json(errors(F.when(python, F.col(VALUE))), ERRORS_TYPE)
    found = F.coalesce(
        F.when(python, from_python).when(~F.col(VALID), F.col(ERRORS_COLUMN)), F.array()
    )
    checked = judged.withColumn(PROBLEM, problem_line(dataset.name, found))
    return checked.drop(VALID, ERRORS_COLUMN, PYTHON)


# ---- typed columns ----------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_FIRST, _LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def instant_micros(value: str | None) -> int | None:
    """Microseconds since the epoch of a timestamp string, parsed exactly as the registry's
    validator parses it (`datetime.fromisoformat`; no offset means UTC); None when it does not
    parse or lies outside 0001-01-01..9999-12-31 UTC (Spark's range)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except (ValueError, TypeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not _FIRST <= moment <= _LAST:
        return None
    return (moment - _EPOCH) // _MICRO


def _instants(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
    for values in batches:
        yield pd.Series([instant_micros(v) for v in values], dtype="Int64")


def to_instant(column: Column) -> Column:
    """A timestamp column from strings, through `instant_micros` (Spark's own cast parses fewer
    forms than the validator accepts: `20260101T100000`, `2026-W01-1` became null)."""
    micros = pandas_udf(_instants, T.LongType())  # type: ignore[call-overload]
    return F.timestamp_micros(micros(column))


def _spark_type(spec: FieldSpec) -> T.DataType:
    """The Spark type `from_json` reads a field as. Untyped values stay JSON text."""
    match spec.type:
        case FieldType.STRING | FieldType.TIMESTAMP:
            return T.StringType()
        case FieldType.INTEGER:
            return T.LongType()
        case FieldType.NUMBER:
            return T.DoubleType()
        case FieldType.BOOLEAN:
            return T.BooleanType()
        case FieldType.OBJECT if spec.fields:
            return T.StructType([T.StructField(n, _spark_type(f)) for n, f in spec.fields.items()])
        case FieldType.ARRAY if spec.items is not None:
            return T.ArrayType(_spark_type(spec.items))
    return T.StringType()  # any, objects and arrays without a declared shape: JSON text


def data_columns(schema: SchemaSpec, nested: NestedMode) -> list[DataColumn]:
    """The dataset's columns in schema order; nested objects flattened to `parent_child`."""

    def walk(fields: dict[str, FieldSpec], path: tuple[str, ...]) -> Iterator[DataColumn]:
        for name, spec in fields.items():
            here = (*path, name)
            if nested is NestedMode.FLATTEN and spec.type is FieldType.OBJECT and spec.fields:
                yield from walk(spec.fields, here)
            else:
                timestamp = spec.type is FieldType.TIMESTAMP
                yield DataColumn("_".join(here), here, _spark_type(spec), timestamp)

    return list(walk(schema.fields, ()))


def envelope_schema(schema: SchemaSpec) -> T.StructType:
    """What `from_json` reads from an envelope line."""
    data = T.StructType([T.StructField(n, _spark_type(f)) for n, f in schema.fields.items()])
    fields = [
        *(T.StructField(n, T.StringType()) for n in ENVELOPE_COLUMNS),
        T.StructField("data", data),
    ]
    return T.StructType(fields)


_SCALARS = {FieldType.STRING, FieldType.TIMESTAMP, FieldType.INTEGER, FieldType.NUMBER}


def _scalar(c: DataColumn, schema: SchemaSpec) -> bool:
    """A top-level string, timestamp, integer, number or boolean: typed from its text."""
    if len(c.path) != 1:
        return False
    return schema.fields[c.path[0]].type in {*_SCALARS, FieldType.BOOLEAN}


def typed_rows(checked: DataFrame, dataset: Dataset) -> DataFrame:
    """Checked lines → _id, _source, _received_at (timestamp), the data columns, [_extra].
    Lines with a problem pass through (typed columns null) so one DataFrame carries both."""
    curated = dataset.curated
    carry = curated.extra_fields is ExtraFields.CARRY
    schema = envelope_schema(dataset.schema)
    ok = F.col(PROBLEM).isNull()
    parsed = checked.select(
        F.when(ok, F.from_json(F.col(VALUE), schema)).alias("e"), VALUE, RAW_KEY, PROBLEM
    )
    if carry:  # the data object read a second time, as a map: its undeclared keys
        parsed = parsed.withColumn(
            "_all",
            F.from_json(
                F.get_json_object(F.col(VALUE), "$.data"),
                "map<string,string>",
            ),
        )
    columns: list[Column] = [
        F.col("e.id").alias(ID),
        F.col("e.source").alias(SOURCE),
        F.col("e.received_at").cast(T.TimestampType()).alias(RECEIVED_AT),
    ]
    data = data_columns(dataset.schema, curated.nested)
    texts = (
        DATA_TEXTS in checked.columns
        and not carry
        and all(_scalar(c, dataset.schema) for c in data)
    )
    if texts:  # the texts the rules read: no second JSON read of the line
        parsed = checked.select(
            F.when(ok, F.col(ENVELOPE_TEXTS)).alias("e"),
            F.when(ok, F.col(DATA_TEXTS)).alias("d"),
            VALUE,
            RAW_KEY,
            PROBLEM,
        )
        columns = [
            text_value(F.col("e")[f'"{n}"'], "string").alias(to)
            for n, to in (("id", ID), ("source", SOURCE), ("received_at", RECEIVED_AT))
        ]
        columns[2] = columns[2].cast(T.TimestampType()).alias(RECEIVED_AT)
    unplaced: list[Column] = []
    for c in data:
        if texts:
            column = text_value(F.col("d")[f'"{c.path[0]}"'], c.type.simpleString())
        else:
            column = F.col("e.data." + ".".join(f"`{p}`" for p in c.path))
        if c.timestamp:
            text, column = column, to_instant(column)
            reason = "timestamp outside 0001-01-01..9999-12-31 UTC"
            unplaced.append(
                F.when(
                    text.isNotNull() & column.isNull(),
                    F.struct(F.lit(c.name).alias("field"), F.lit(reason).alias("message")),
                )
            )
        columns.append(column.alias(c.name))
    if carry:
        declared = F.array(*(F.lit(n) for n in dataset.schema.fields))
        columns.append(
            F.map_filter("_all", lambda k, _v: ~F.array_contains(declared, k)).alias(EXTRA_COLUMN)
        )
    problem = F.col(PROBLEM)
    if unplaced:  # the validator accepted it, but Spark cannot hold the instant
        failures = F.filter(F.array(*unplaced), lambda e: e.isNotNull())
        problem = F.coalesce(problem, problem_line(dataset.name, failures))
    return parsed.select(*columns, VALUE, RAW_KEY, problem.alias(PROBLEM))


# ---- mapping, filter, partitions --------------------------------------------------------------


def _cast_problem(dataset: str, casts: dict[str, str]) -> Column:
    """The quarantine line for a row whose cast failed (a value that became null), else null."""
    failures = [
        F.when(
            F.col(f"_before_{name}").isNotNull() & F.col(name).isNull(),
            F.struct(F.lit(name).alias("field"), F.lit(f"cannot cast to {to}").alias("message")),
        )
        for name, to in casts.items()
    ]
    return problem_line(dataset, F.filter(F.array(*failures), lambda e: e.isNotNull()))


def apply_mapping(rows: DataFrame, dataset: str, curated: CuratedSpec) -> DataFrame:
    """ApplyMapping: rename, then cast (a failed cast sets `_problem`), then drop."""
    known = set(rows.columns)
    for name in [*curated.rename, *curated.drop]:
        if name not in known and name not in curated.rename.values():
            raise ValueError(f"curated mapping of {dataset} names unknown column {name!r}")
    for old, new in curated.rename.items():
        rows = rows.withColumnRenamed(old, new)
    for name in curated.cast:
        if name not in rows.columns:
            raise ValueError(f"curated cast of {dataset} names unknown column {name!r}")
    before = [F.col(n).alias(f"_before_{n}") for n in curated.cast]
    rows = rows.select("*", *before)
    for name, to in curated.cast.items():
        rows = rows.withColumn(name, F.col(name).cast(to))
    problem = _cast_problem(dataset, curated.cast) if curated.cast else F.lit(None)
    rows = rows.withColumn(PROBLEM, F.coalesce(F.col(PROBLEM), problem.cast(T.StringType())))
    return rows.drop(*(f"_before_{n}" for n in curated.cast), *curated.drop)


def with_partitions(rows: DataFrame, by: str, dataset: str) -> DataFrame:
    """year/month/day (zero-padded text, UTC) of the `by` timestamp; a row without one is a
    problem (it could not be placed)."""
    if by not in rows.columns:
        raise ValueError(f"curated partition_by of {dataset} names unknown column {by!r}")
    at = F.col(by).cast(T.TimestampType())
    missing = problem_line(
        dataset,
        F.array(
            F.struct(
                F.lit(by).alias("field"), F.lit("no timestamp to partition by").alias("message")
            )
        ),
    )
    problem = F.coalesce(F.col(PROBLEM), F.when(at.isNull(), missing))
    return rows.withColumns(
        {
            PROBLEM: problem,
            "year": F.date_format(at, "yyyy"),
            "month": F.date_format(at, "MM"),
            "day": F.date_format(at, "dd"),
        }
    )


def apply_filter(rows: DataFrame, condition: str | None) -> DataFrame:
    """Filter: keep the rows for which `condition` is true (null counts as false)."""
    if condition is None:
        return rows
    return rows.where(F.coalesce(F.expr(condition), F.lit(False)))


# ---- dedupe -----------------------------------------------------------------------------------


def first_arrivals(rows: DataFrame) -> DataFrame:
    """One row per id: the earliest `_received_at` (ties: the first raw object by key)."""
    order = Window.partitionBy(ID).orderBy(F.col(RECEIVED_AT), F.col(RAW_KEY))
    return rows.withColumn("_n", F.row_number().over(order)).where("_n = 1").drop("_n")


def not_yet_curated(rows: DataFrame, existing_ids: DataFrame | None) -> DataFrame:
    """Drop rows whose id is already in the curated partitions read (an anti-join)."""
    if existing_ids is None:
        return rows
    return rows.join(existing_ids.select(ID).distinct(), on=ID, how="left_anti")


def output_columns(rows: DataFrame) -> DataFrame:
    """The columns written: everything but the ride-along ones."""
    return rows.drop(VALUE, RAW_KEY, PROBLEM)
