"""The published record schemas and the API's validator give the same verdict on any record
(DESIGN: one schema, several compiled forms, held to the same verdicts by property tests)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tributary.dataset import DatasetRegistry
from tributary.schema import RecordValidator, SchemaSpec
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

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 45)
    | st.floats(-4, 4, allow_nan=False)
    | st.sampled_from(["", "a", "ab", "abcd", "b!", "red", "blue", "c"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["k", "z"]), inner),
    max_leaves=6,
)


def records(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from([*names, "extra"]), values, max_size=len(names) + 1)


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


def agree(schema: SchemaSpec, record: dict[str, Any]) -> None:
    reference = jsonschema.Draft4Validator(draft4(record_schema(schema)))
    assert RecordValidator(schema).is_valid(record) == reference.is_valid(record), record


@settings(max_examples=400, deadline=None)
@given(records(list(RICH.fields)))
def test_every_constraint_means_the_same_in_both(record: dict[str, Any]) -> None:
    agree(RICH, record)


@pytest.mark.parametrize("name", ["posts", "events", "comments"])
def test_the_registry_datasets_agree(registry: DatasetRegistry, name: str) -> None:
    schema = registry[name].schema

    @settings(max_examples=200, deadline=None)
    @given(records(list(schema.fields)))
    def check(record: dict[str, Any]) -> None:
        agree(schema, record)

    check()


def test_integers_are_written_without_a_fraction() -> None:
    agree(RICH, {"n": 1.0})  # refused by both: OpenAPI 3.0 / draft 4 integer
    assert not RecordValidator(RICH).is_valid({"n": 1.0})
