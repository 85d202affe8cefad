"""The published record schemas and the API's validator give the same verdict on any record
(DESIGN: one schema, several compiled forms, held to the same verdicts by property tests)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tributary.dataset import DatasetRegistry
from tributary.schema import FieldSpec, FieldType, RecordValidator, SchemaSpec, _is_timestamp
from tributary_api.openapi import record_schema

RICH = SchemaSpec.model_validate(
    {
        "fields": {
            "n": {"type": "integer", "required": True, "minimum": -3, "maximum": 40},
            "x": {"type": "number", "nullable": True, "maximum": 2.5},
            "s": {"type": "string", "min_length": 1, "max_length": 3, "pattern": "^[ab]"},
            "e": {"type": "string", "enum": ["red", "blue"], "nullable": True},
            "b": {"type": "boolean"},
            "tags": {"type": "array", "max_length": 2, "items": {"type": "string"}},
            "o": {
                "type": "object",
                "additional_fields": "reject",
                "fields": {"k": {"type": "integer", "required": True}},
            },
            "any": {"type": "any"},
        },
        "additional_fields": "reject",
    }
)

other = st.none() | st.booleans() | st.integers(-2, 2) | st.floats(-1, 1) | st.just("z")


def candidates(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Values around what `spec` allows: mostly its own kind, near its limits, plus others."""
    low = -5 if spec.minimum is None else int(spec.minimum) - 2
    high = 50 if spec.maximum is None else int(spec.maximum) + 2
    shortest = 0 if spec.min_length is None else max(0, spec.min_length - 1)
    longest = 6 if spec.max_length is None else spec.max_length + 1
    own: st.SearchStrategy[Any] = {
        FieldType.INTEGER: st.integers(low, high) | st.just(float(high - 3)),
        FieldType.NUMBER: st.integers(low, high) | st.floats(low, high),
        FieldType.STRING: st.text("abc!", min_size=shortest, max_size=longest),
        FieldType.BOOLEAN: st.booleans(),
        FieldType.TIMESTAMP: st.sampled_from(
            ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.5+01:00", "2026-13-02T00:00:00Z", "x"]
        ),
        FieldType.ANY: other,
        FieldType.OBJECT: st.just({}),
        FieldType.ARRAY: st.just([]),
    }[spec.type]
    if spec.enum is not None:
        own = st.sampled_from([*spec.enum, "green"])
    if spec.fields is not None:
        own = records(spec.fields)
    if spec.items is not None:
        own = st.lists(candidates(spec.items), min_size=shortest, max_size=longest)
    return st.one_of(own, own, own, other)


def records(fields: dict[str, FieldSpec]) -> st.SearchStrategy[dict[str, Any]]:
    """Each field present or not; now and then a field the schema does not declare."""
    declared = st.fixed_dictionaries({}, optional={n: candidates(f) for n, f in fields.items()})
    extra = st.fixed_dictionaries({}, optional={"extra": other})
    return st.one_of(declared, declared, st.tuples(declared, extra).map(lambda p: p[0] | p[1]))


def draft4(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0's `nullable` as JSON Schema draft 4 spells it (for the reference validator)."""
    out = {k: draft4(v) if isinstance(v, dict) else v for k, v in schema.items()}
    if "properties" in out:
        out["properties"] = {k: draft4(v) for k, v in schema["properties"].items()}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


# `format: date-time` as the validator reads timestamps (every RFC 3339 date-time is one).
FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("date-time")(lambda value: not isinstance(value, str) or _is_timestamp(value))


def agree(schema: SchemaSpec, record: dict[str, Any]) -> None:
    reference = jsonschema.Draft4Validator(draft4(record_schema(schema)), format_checker=FORMATS)
    assert RecordValidator(schema).is_valid(record) == reference.is_valid(record), record


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(sorted(RICH.fields)).flatmap(
        lambda n: st.tuples(st.just(n), candidates(RICH.fields[n]))
    )
)
def test_every_constraint_means_the_same_in_both(field: tuple[str, Any]) -> None:
    name, value = field
    agree(RICH, {"n": 1, name: value})  # one field decides the verdict


@settings(max_examples=300, deadline=None)
@given(records(RICH.fields))
def test_whole_records_agree(record: dict[str, Any]) -> None:
    agree(RICH, record)


@pytest.mark.parametrize("name", ["posts", "events", "comments", "items"])
def test_the_registry_datasets_agree(registry: DatasetRegistry, name: str) -> None:
    schema = registry[name].schema

    @settings(max_examples=200, deadline=None)
    @given(records(schema.fields))
    def check(record: dict[str, Any]) -> None:
        agree(schema, record)

    check()


def test_integers_are_written_without_a_fraction() -> None:
    agree(RICH, {"n": 1.0})  # refused by both: OpenAPI 3.0 / draft 4 integer
    assert not RecordValidator(RICH).is_valid({"n": 1.0})
