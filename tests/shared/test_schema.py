from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tributary.schema import FieldError, RecordValidator, SchemaSpec


def validator(fields: dict[str, Any], **kw: Any) -> RecordValidator:
    return RecordValidator(SchemaSpec.model_validate({"fields": fields, **kw}))


POSTS = validator(
    {
        "userId": {"type": "integer", "required": True, "minimum": 1},
        "id": {"type": "integer", "required": True},
        "title": {"type": "string", "required": True},
        "body": {"type": "string", "required": True},
    }
)


def test_valid_record_has_no_errors() -> None:
    assert POSTS.errors({"userId": 1, "id": 2, "title": "t", "body": "b", "extra": 1}) == []


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"id": 2, "title": "t", "body": "b"}, [FieldError("userId", "field required")]),
        (
            {"userId": "1", "id": 2, "title": "t", "body": "b"},
            [FieldError("userId", "must be integer, got string")],
        ),
        (
            {"userId": True, "id": 2, "title": "t", "body": "b"},
            [FieldError("userId", "must be integer, got boolean")],
        ),
        (
            {"userId": 0, "id": 2, "title": "t", "body": "b"},
            [FieldError("userId", "must be >= 1, got 0")],
        ),
        (
            {"userId": 1, "id": 2.5, "title": None, "body": "b"},
            [
                FieldError("id", "must be integer, got number"),
                FieldError("title", "must be string, got null"),
            ],
        ),
        ([1, 2], [FieldError("", "record must be a JSON object, got array")]),
        ("text", [FieldError("", "record must be a JSON object, got string")]),
    ],
)
def test_errors_name_the_field(record: Any, expected: list[FieldError]) -> None:
    assert POSTS.errors(record) == expected


def test_constraints_and_nesting() -> None:
    v = validator(
        {
            "kind": {"type": "string", "enum": ["a", "b"]},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$", "max_length": 3},
            "at": {"type": "timestamp"},
            "user": {
                "type": "object",
                "fields": {"name": {"type": "string", "required": True}},
                "additional_fields": "reject",
            },
            "tags": {"type": "array", "items": {"type": "string", "min_length": 1}},
            "score": {"type": "number", "maximum": 1, "nullable": True},
        },
        additional_fields="reject",
    )
    assert (
        v.errors(
            {
                "kind": "a",
                "code": "ABC",
                "at": "2026-01-01T00:00:00Z",
                "user": {"name": "x"},
                "tags": ["t"],
                "score": None,
            }
        )
        == []
    )
    errors = v.errors(
        {
            "kind": "c",
            "code": "abcd",
            "at": "yesterday",
            "user": {"age": 3},
            "tags": ["ok", ""],
            "score": 2,
            "surprise": 1,
        }
    )
    assert [e.field for e in errors] == [
        "kind",
        "code",
        "code",
        "at",
        "user.name",
        "user.age",
        "tags[1]",
        "score",
        "surprise",
    ]
    assert errors[3].message == "must be ISO-8601 timestamp string, got string"


def test_bad_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="'fields' is only allowed on type: object"):
        validator({"x": {"type": "string", "fields": {}}})


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text() | st.none(), max_size=6))
def test_any_object_is_valid_against_an_open_schema(record: dict[str, Any]) -> None:
    assert validator({}).errors(record) == []


# --- the fast predicate and the error-building validator must agree on every input ---------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-5, 5)
    | st.sampled_from(["", "a", "ABC", "abcd", "2026-01-01T00:00:00Z", "x" * 5])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def field_specs(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["string", "integer", "number", "boolean", "object", "array", "timestamp", "any"]
        )
    )
    spec: dict[str, Any] = {
        "type": kind,
        "required": draw(st.booleans()),
        "nullable": draw(st.booleans()),
    }
    if kind in ("integer", "number") and draw(st.booleans()):
        spec["minimum"] = draw(st.integers(-3, 3))
    if kind in ("integer", "number") and draw(st.booleans()):
        spec["maximum"] = draw(st.integers(-3, 3))
    if kind in ("string", "array") and draw(st.booleans()):
        spec["min_length"] = draw(st.integers(0, 3))
    if kind in ("string", "array") and draw(st.booleans()):
        spec["max_length"] = draw(st.integers(0, 3))
    if kind == "string" and draw(st.booleans()):
        spec["pattern"] = draw(st.sampled_from(["^[A-Z]+$", "a", "^$"]))
    if draw(st.integers(0, 5)) == 0:
        spec["enum"] = draw(st.lists(SCALARS, min_size=1, max_size=3))
    if kind == "object" and depth < 2 and draw(st.booleans()):
        spec["fields"] = draw(
            st.dictionaries(st.sampled_from(["a", "b", "c"]), field_specs(depth + 1), max_size=2)
        )
        spec["additional_fields"] = draw(st.sampled_from(["allow", "reject"]))
    if kind == "array" and depth < 2 and draw(st.booleans()):
        spec["items"] = draw(field_specs(depth + 1))
    return spec


@given(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), field_specs(), max_size=4),
    st.sampled_from(["allow", "reject"]),
    st.lists(
        VALUES | st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), VALUES, max_size=5),
        min_size=1,
        max_size=10,
    ),
)
@settings(max_examples=600, deadline=None)
def test_fast_predicate_agrees_with_errors(
    fields: dict[str, Any], additional: str, records: list[Any]
) -> None:
    v = validator(fields, additional_fields=additional)
    for record in records:
        assert v.is_valid(record) == (v.errors(record) == []), (fields, record, v.errors(record))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "string", "minimum": 1}, "'minimum' is only allowed on type: integer or number"),
        ({"type": "integer", "pattern": "x"}, "'pattern' is only allowed on type: string"),
        ({"type": "any", "max_length": 2}, "'max_length' is only allowed on type: array or string"),
    ],
)
def test_constraints_must_fit_the_type(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validator({"x": spec})
