from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
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
