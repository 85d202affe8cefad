"""The OpenAPI document's dataset part, generated from the registry (the one schema).

Each dataset gets its own path, `/v1/datasets/<name>/records`, whose request body is that
dataset's record schema in JSON Schema (types, required fields, ranges, lengths, patterns,
enums, nested objects and arrays) in the three JSON forms the API reads — one record, an array of
records, `{"records": [...]}` — so a client generated from /openapi.json sends records the API
accepts, and a fuzzer's valid data is valid here too.
"""

from __future__ import annotations

import copy
from typing import Any

from tributary.dataset import Dataset, DatasetRegistry
from tributary.schema import AdditionalFields, FieldSpec, FieldType, SchemaSpec

INGEST_PATH = "/v1/datasets/{dataset}/records"
# OpenAPI 3.0: its schemas' `integer` excludes a fractional spelling (`1.0`), as the API's
# validator does; in 3.1 (JSON Schema 2020-12) `1.0` is an integer, which the API refuses.
OPENAPI_VERSION = "3.0.3"
# What the body parser (orjson) reads as exact numbers: 64-bit integers, finite doubles.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
FLOAT_MAX = 1.7976931348623157e308

_JSON_TYPES = {
    FieldType.STRING: "string",
    FieldType.INTEGER: "integer",
    FieldType.NUMBER: "number",
    FieldType.BOOLEAN: "boolean",
    FieldType.OBJECT: "object",
    FieldType.ARRAY: "array",
    FieldType.TIMESTAMP: "string",
}


def field_schema(spec: FieldSpec) -> dict[str, Any]:
    """JSON Schema for one field, saying exactly what its validator accepts."""
    out: dict[str, Any] = {}
    kind = _JSON_TYPES.get(spec.type)
    if kind is not None:
        out["type"] = kind
    if spec.nullable:
        out["nullable"] = True
    if spec.type is FieldType.TIMESTAMP:
        out["format"] = "date-time"
    if spec.type is FieldType.INTEGER:
        out["minimum"], out["maximum"] = INT_MIN, INT_MAX
    if spec.type is FieldType.NUMBER:
        out["minimum"], out["maximum"] = -FLOAT_MAX, FLOAT_MAX
    if spec.minimum is not None:
        out["minimum"] = _number(spec.minimum, spec.type)
    if spec.maximum is not None:
        out["maximum"] = _number(spec.maximum, spec.type)
    lengths = (
        ("minItems", "maxItems") if spec.type is FieldType.ARRAY else ("minLength", "maxLength")
    )
    if spec.min_length is not None:
        out[lengths[0]] = spec.min_length
    if spec.max_length is not None:
        out[lengths[1]] = spec.max_length
    if spec.pattern is not None:
        out["pattern"] = spec.pattern
    if spec.enum is not None:
        out["enum"] = [*spec.enum, None] if spec.nullable else list(spec.enum)
    if spec.fields is not None:
        out.update(_object(spec.fields, spec.additional_fields))
    if spec.items is not None:
        out["items"] = field_schema(spec.items)
    return out


def record_schema(schema: SchemaSpec, description: str = "") -> dict[str, Any]:
    """JSON Schema for one record of a dataset."""
    out = {"type": "object", **_object(schema.fields, schema.additional_fields)}
    if description:
        out["description"] = description
    return out


def _object(fields: dict[str, FieldSpec], additional: AdditionalFields) -> dict[str, Any]:
    out: dict[str, Any] = {"properties": {name: field_schema(f) for name, f in fields.items()}}
    required = [name for name, f in fields.items() if f.required]
    if required:
        out["required"] = required
    out["additionalProperties"] = additional is AdditionalFields.ALLOW
    return out


def _number(value: float, kind: FieldType) -> float | int:
    return int(value) if kind is FieldType.INTEGER and value == int(value) else value


def request_body(dataset: Dataset, max_records: int) -> dict[str, Any]:
    """The request body of one dataset's ingest operation."""
    ref = {"$ref": f"#/components/schemas/{component_name(dataset.name)}"}
    records = {"type": "array", "items": ref, "minItems": 1, "maxItems": max_records}
    return {
        "required": True,
        "description": (
            'One record, an array of records, or `{"records": [...]}`; NDJSON (one record per '
            "line) with `Content-Type: application/x-ndjson`. `Content-Encoding: gzip` is "
            "accepted, with the decompressed size capped. Records that fail the schema are "
            "quarantined and listed in `errors`; the valid ones of the same request are accepted."
        ),
        "content": {
            "application/json": {
                # anyOf, not oneOf: `{"records": [...]}` is also an object, and a dataset that
                # allows undeclared fields accepts it as one record's shape too.
                "schema": {
                    "anyOf": [
                        ref,
                        records,
                        {
                            "type": "object",
                            "required": ["records"],
                            "additionalProperties": False,
                            "properties": {"records": records},
                        },
                    ]
                }
            }
        },
    }


def component_name(dataset: str) -> str:
    """`posts` → `PostsRecord`."""
    return "".join(part.capitalize() for part in dataset.split("_")) + "Record"


def per_dataset(spec: dict[str, Any], registry: DatasetRegistry, max_records: int) -> None:
    """Replace the generic ingest path of `spec` with one path per dataset, in place."""
    generic = spec["paths"].pop(INGEST_PATH)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in sorted(registry):
        dataset = registry[name]
        operation = copy.deepcopy(generic["post"])
        operation["operationId"] = f"ingest_{name}"
        operation["summary"] = f"Ingest {name} records"
        operation["parameters"] = [
            p for p in operation.get("parameters", []) if p.get("name") != "dataset"
        ]
        operation["requestBody"] = request_body(dataset, max_records)
        schemas[component_name(name)] = record_schema(dataset.schema, dataset_description(name))
        spec["paths"][INGEST_PATH.replace("{dataset}", name)] = {"post": operation}


def dataset_description(name: str) -> str:
    """One line for the record schema."""
    return f"One `{name}` record, as the dataset registry declares it."


def to_openapi_30(node: Any) -> Any:
    """`node` with 3.1-only spellings of pydantic's schemas rewritten for 3.0, recursively:
    `anyOf: [X, {type: null}]` → X with `nullable: true`; `examples` lists dropped."""
    if isinstance(node, list):
        return [to_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_openapi_30(value) for key, value in node.items() if key != "examples"}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out.update(rest[0])
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    return out
