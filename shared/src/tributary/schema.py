"""Record schemas from the dataset registry, compiled to fast per-record validators.

A schema is a set of named fields, each with a type and optional constraints. Validation never
raises for bad data: it returns every problem as a `FieldError` naming the field's dotted path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FieldType(StrEnum):
    """JSON types a field may be declared with."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    OBJECT = "object"
    ARRAY = "array"
    TIMESTAMP = "timestamp"  # an ISO-8601 string
    ANY = "any"


class AdditionalFields(StrEnum):
    """What to do with fields the schema does not declare."""

    ALLOW = "allow"
    REJECT = "reject"


class FieldSpec(BaseModel):
    """One field's declaration in the dataset registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: FieldType = FieldType.ANY
    required: bool = False
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=0)
    pattern: str | None = None
    enum: list[Any] | None = None
    fields: dict[str, FieldSpec] | None = None  # for type: object
    additional_fields: AdditionalFields = AdditionalFields.ALLOW  # for type: object
    items: FieldSpec | None = None  # for type: array

    @model_validator(mode="after")
    def _check(self) -> FieldSpec:
        allowed = {
            "fields": {FieldType.OBJECT},
            "additional_fields": {FieldType.OBJECT},
            "items": {FieldType.ARRAY},
            "minimum": {FieldType.INTEGER, FieldType.NUMBER},
            "maximum": {FieldType.INTEGER, FieldType.NUMBER},
            "min_length": {FieldType.STRING, FieldType.ARRAY},
            "max_length": {FieldType.STRING, FieldType.ARRAY},
            "pattern": {FieldType.STRING},
        }
        for name, types in allowed.items():
            if name in self.model_fields_set and self.type not in types:
                kinds = " or ".join(sorted(t.value for t in types))
                raise ValueError(f"'{name}' is only allowed on type: {kinds}")
        if self.pattern is not None:
            re.compile(self.pattern)
        return self


class SchemaSpec(BaseModel):
    """A dataset's record schema: the top-level object's fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    additional_fields: AdditionalFields = AdditionalFields.ALLOW


@dataclass(frozen=True, slots=True)
class FieldError:
    """One validation problem: the field's dotted path ('' for the record itself) and why."""

    field: str
    message: str


Check = Callable[[Any, str, list[FieldError]], None]

_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _is_type(kind: FieldType, value: Any) -> bool:
    match kind:
        case FieldType.STRING:
            return isinstance(value, str)
        case FieldType.INTEGER:
            return isinstance(value, int) and not isinstance(value, bool)
        case FieldType.NUMBER:
            return isinstance(value, int | float) and not isinstance(value, bool)
        case FieldType.BOOLEAN:
            return isinstance(value, bool)
        case FieldType.OBJECT:
            return isinstance(value, dict)
        case FieldType.ARRAY:
            return isinstance(value, list)
        case FieldType.TIMESTAMP:
            return isinstance(value, str) and _is_timestamp(value)
        case FieldType.ANY:
            return True


def _is_timestamp(value: str) -> bool:
    """ISO-8601 (`datetime.fromisoformat`) naming an instant in years 1..9999 UTC: with an
    offset, `0001-01-01T00:00:00+01:00` is in year 0 and fits no timestamp column."""
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return False
    return True


def _compile_field(spec: FieldSpec) -> Check:
    """Build the check for one present field value."""
    constraint_checks: list[Check] = []
    if spec.minimum is not None:
        low = spec.minimum
        constraint_checks.append(
            lambda v, p, e: (
                e.append(FieldError(p, f"must be >= {low:g}, got {v!r}")) if v < low else None
            )
        )
    if spec.maximum is not None:
        high = spec.maximum
        constraint_checks.append(
            lambda v, p, e: (
                e.append(FieldError(p, f"must be <= {high:g}, got {v!r}")) if v > high else None
            )
        )
    if spec.min_length is not None:
        shortest = spec.min_length
        constraint_checks.append(
            lambda v, p, e: (
                e.append(FieldError(p, f"length must be >= {shortest}, got {len(v)}"))
                if len(v) < shortest
                else None
            )
        )
    if spec.max_length is not None:
        longest = spec.max_length
        constraint_checks.append(
            lambda v, p, e: (
                e.append(FieldError(p, f"length must be <= {longest}, got {len(v)}"))
                if len(v) > longest
                else None
            )
        )
    if spec.pattern is not None:
        regex = re.compile(spec.pattern)
        constraint_checks.append(
            lambda v, p, e: (
                e.append(FieldError(p, f"must match pattern {regex.pattern!r}"))
                if isinstance(v, str) and regex.search(v) is None
                else None
            )
        )
    if spec.enum is not None:
        allowed = list(spec.enum)
        constraint_checks.append(
            lambda v, p, e: (
                e.append(FieldError(p, f"must be one of {allowed!r}, got {v!r}"))
                if v not in allowed
                else None
            )
        )
    if spec.fields is not None:
        constraint_checks.append(_compile_object(spec.fields, spec.additional_fields))
    if spec.items is not None:
        item_check = _compile_field(spec.items)

        def check_items(value: Any, path: str, errors: list[FieldError]) -> None:
            for i, item in enumerate(value):
                item_check(item, f"{path}[{i}]", errors)

        constraint_checks.append(check_items)

    kind, nullable = spec.type, spec.nullable
    expected = "ISO-8601 timestamp string" if kind is FieldType.TIMESTAMP else kind.value

    def check(value: Any, path: str, errors: list[FieldError]) -> None:
        if value is None:
            if not nullable and kind is not FieldType.ANY:
                errors.append(FieldError(path, f"must be {expected}, got null"))
            return
        if not _is_type(kind, value):
            errors.append(FieldError(path, f"must be {expected}, got {_json_type(value)}"))
            return
        for constraint in constraint_checks:
            constraint(value, path, errors)

    return check


def _compile_object(fields: dict[str, FieldSpec], additional: AdditionalFields) -> Check:
    """Build the check for an object's declared fields."""
    compiled = [(name, spec.required, _compile_field(spec)) for name, spec in fields.items()]
    declared = frozenset(fields)
    reject_extra = additional is AdditionalFields.REJECT

    def check(value: dict[str, Any], path: str, errors: list[FieldError]) -> None:
        prefix = f"{path}." if path else ""
        for name, required, field_check in compiled:
            if name in value:
                field_check(value[name], prefix + name, errors)
            elif required:
                errors.append(FieldError(prefix + name, "field required"))
        if reject_extra:
            for name in value:
                if name not in declared:
                    errors.append(FieldError(prefix + name, "field not allowed by the schema"))

    return check


class _PredicateBuilder:
    """Generates one Python function that answers only "is this record valid?".

    Valid records are the hot path: the generated code checks every field inline (no call per
    field, no error objects), and only records it rejects go through the closures above, which
    say why. A property test holds the two to the same answer.
    """

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"M": _MISSING, "_is_timestamp": _is_timestamp}
        self.functions: list[str] = []

    def _const(self, value: Any) -> str:
        name = f"C{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def _conditions(self, spec: FieldSpec, var: str) -> list[str]:
        """Conditions a present, non-null value must all meet."""
        conds = {
            FieldType.STRING: [f"isinstance({var}, str)"],
            FieldType.INTEGER: [f"isinstance({var}, int)", f"{var}.__class__ is not bool"],
            FieldType.NUMBER: [f"isinstance({var}, (int, float))", f"{var}.__class__ is not bool"],
            FieldType.BOOLEAN: [f"isinstance({var}, bool)"],
            FieldType.OBJECT: [f"isinstance({var}, dict)"],
            FieldType.ARRAY: [f"isinstance({var}, list)"],
            FieldType.TIMESTAMP: [f"isinstance({var}, str)", f"_is_timestamp({var})"],
            FieldType.ANY: [],
        }[spec.type]
        if spec.minimum is not None:
            conds.append(f"{var} >= {self._const(spec.minimum)}")
        if spec.maximum is not None:
            conds.append(f"{var} <= {self._const(spec.maximum)}")
        if spec.min_length is not None:
            conds.append(f"len({var}) >= {spec.min_length}")
        if spec.max_length is not None:
            conds.append(f"len({var}) <= {spec.max_length}")
        if spec.pattern is not None:
            conds.append(f"{self._const(re.compile(spec.pattern))}.search({var}) is not None")
        if spec.enum is not None:
            conds.append(f"{var} in {self._const(list(spec.enum))}")
        if spec.fields is not None:
            conds.append(f"{self.object_function(spec.fields, spec.additional_fields)}({var})")
        if spec.items is not None:
            conds.append(f"all({self.value_function(spec.items)}(x) for x in {var})")
        return conds

    def _null_ok(self, spec: FieldSpec) -> bool:
        return spec.nullable or spec.type is FieldType.ANY

    def value_function(self, spec: FieldSpec) -> str:
        """A function checking one value (array items)."""
        slot = len(self.functions)
        name = f"value_{slot}"
        self.functions.append("")  # reserve the slot: nested specs add functions after it
        conds = " and ".join(self._conditions(spec, "v")) or "True"
        self.functions[slot] = (
            f"def {name}(v):\n"
            f"    if v is None:\n        return {self._null_ok(spec)}\n"
            f"    return {conds}\n"
        )
        return name

    def object_function(self, fields: dict[str, FieldSpec], additional: AdditionalFields) -> str:
        """A function checking an object known to be a dict."""
        slot = len(self.functions)
        name = f"object_{slot}"
        self.functions.append("")  # reserve the slot: nested specs add functions after it
        body = []
        for field_name, spec in fields.items():
            body.append(f"    v = r.get({field_name!r}, M)")
            body.append("    if v is M:")
            body.append("        return False" if spec.required else "        pass")
            if not self._null_ok(spec):
                body.append("    elif v is None:\n        return False")
            conds = self._conditions(spec, "v")
            if conds:
                body.append(f"    elif v is not None and not ({' and '.join(conds)}):")
                body.append("        return False")
        if additional is AdditionalFields.REJECT:
            body.append(f"    if not {self._const(frozenset(fields))}.issuperset(r):")
            body.append("        return False")
        self.functions[slot] = f"def {name}(r):\n" + "\n".join([*body, "    return True"]) + "\n"
        return name

    def build(self, schema: SchemaSpec) -> Callable[[Any], bool]:
        """Compile the predicate for `schema`."""
        top = self.object_function(schema.fields, schema.additional_fields)
        source = "\n".join(self.functions)
        source += f"\ndef is_valid(r):\n    return isinstance(r, dict) and {top}(r)\n"
        exec(compile(source, "<tributary.schema predicate>", "exec"), self.namespace)
        predicate: Callable[[Any], bool] = self.namespace["is_valid"]
        return predicate


_MISSING = object()


class RecordValidator:
    """A compiled schema: `errors(record)` lists every problem, empty when the record is valid."""

    def __init__(self, schema: SchemaSpec) -> None:
        self._check = _compile_object(schema.fields, schema.additional_fields)
        self.is_valid: Callable[[Any], bool] = _PredicateBuilder().build(schema)
        """True exactly when `errors(record)` is empty; several times faster."""

    def errors(self, record: Any) -> list[FieldError]:
        """Every problem with `record`, in field order; `[]` means valid."""
        if not isinstance(record, dict):
            return [FieldError("", f"record must be a JSON object, got {_json_type(record)}")]
        errors: list[FieldError] = []
        self._check(record, "", errors)
        return errors
