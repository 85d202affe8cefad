"""How a dataset is promoted to the curated zone: the `curated:` block of its registry entry.

```yaml
curated:
  nested: flatten           # nested objects → `parent_child` columns (like Glue's UnnestFrame),
                            # or `keep` them as structs
  rename: {userId: user_id} # like ApplyMapping: rename, cast, drop (after flattening)
  cast: {price: "decimal(10,2)"}
  drop: [body]
  filter: "user_id > 0"     # a Spark SQL condition; rows that fail it are dropped (counted)
  extra_fields: ignore      # fields in raw the schema does not declare: `ignore`, or `carry`
                            # them in one map<string,string> column `_extra` (strings as
                            # they are, numbers/objects/arrays as JSON text)
  partition_by: _received_at  # a timestamp column (default: the envelope's arrival time):
                            # year/month/day partitions of the curated table
  dedupe_lookback_days: 7   # a late duplicate is dropped if its twin landed this many days back
  catalog: {table: true, partitions: true, crawler: true}
  relationalize: [lines]    # arrays of objects → child tables `<dataset>_<field>` (append-only,
                            # partitioned like the parent): `_id` = `<parent _id>#<position>`,
                            # `_parent_id`, `_index`, the element's fields flattened
  current: {key: id, order_by: updated_at}  # `<dataset>_current`: the latest row of each key
                            # (ties: the later `_received_at`), published as whole snapshots
```
Curated rows carry the envelope as `_id`, `_source`, `_received_at` next to the data columns.
Every key is optional; without the block a dataset is curated with these defaults.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tributary.schema import FieldSpec, FieldType, SchemaSpec

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NestedMode(StrEnum):
    """What happens to nested objects."""

    FLATTEN = "flatten"
    KEEP = "keep"


class ExtraFields(StrEnum):
    """What happens to fields the schema does not declare (schema drift)."""

    IGNORE = "ignore"
    CARRY = "carry"


class CatalogSpec(BaseModel):
    """Which catalog steps the curate job performs after writing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: bool = True
    partitions: bool = True
    crawler: bool = True


class CurrentSpec(BaseModel):
    """`curated.current`: a `<dataset>_current` table with the latest row of each key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    order_by: str

    @field_validator("key", "order_by")
    @classmethod
    def _column(cls, value: str) -> str:
        if not _COLUMN.match(value):
            raise ValueError(f"column name {value!r} must match {_COLUMN.pattern}")
        return value


class CuratedSpec(BaseModel):
    """The `curated:` block of a dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nested: NestedMode = NestedMode.FLATTEN
    rename: dict[str, str] = Field(default_factory=dict)
    cast: dict[str, str] = Field(default_factory=dict)
    drop: list[str] = Field(default_factory=list)
    filter: str | None = None
    extra_fields: ExtraFields = ExtraFields.IGNORE
    partition_by: str = "_received_at"
    dedupe_lookback_days: int = Field(default=7, ge=0)
    catalog: CatalogSpec = Field(default_factory=CatalogSpec)
    relationalize: list[str] = Field(default_factory=list)
    current: CurrentSpec | None = None

    @field_validator("rename")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value.values():
            if not _COLUMN.match(target):
                raise ValueError(f"column name {target!r} must match {_COLUMN.pattern}")
        return value


# The envelope's columns on every curated row, and the partition columns.
ENVELOPE_COLUMN_TYPES = {
    "_id": FieldType.STRING,
    "_source": FieldType.STRING,
    "_received_at": FieldType.TIMESTAMP,
}
PARTITION_COLUMN_TYPES = {
    "year": FieldType.STRING,
    "month": FieldType.STRING,
    "day": FieldType.STRING,
}
_CAST_TYPES = (
    (
        re.compile(
            r"(decimal|numeric|double|float|real)\b.*|(tiny|small|big)?int(eger)?|long|short|byte"
        ),
        FieldType.NUMBER,
    ),
    (re.compile(r"string|varchar.*|char.*"), FieldType.STRING),
    (re.compile(r"timestamp.*|date"), FieldType.TIMESTAMP),
    (re.compile(r"boolean"), FieldType.BOOLEAN),
)


def curated_columns(schema: SchemaSpec, curated: CuratedSpec) -> dict[str, FieldType]:
    """The columns a dataset's curated rows have, with their types, as the curate job makes
    them (`tributary_curate.transform`): the envelope's, the data columns (nested objects
    flattened to `parent_child` unless `nested: keep`), renamed, cast and dropped, `_extra`
    when carried, and the partition columns."""

    def walk(fields: dict[str, FieldSpec], path: tuple[str, ...]) -> dict[str, FieldType]:
        found: dict[str, FieldType] = {}
        for name, spec in fields.items():
            here = (*path, name)
            if (
                curated.nested is NestedMode.FLATTEN
                and spec.type is FieldType.OBJECT
                and spec.fields
            ):
                found.update(walk(spec.fields, here))
            else:
                found["_".join(here)] = spec.type
        return found

    columns = {**ENVELOPE_COLUMN_TYPES, **walk(schema.fields, ())}
    if curated.extra_fields is ExtraFields.CARRY:
        columns["_extra"] = FieldType.OBJECT
    columns = {curated.rename.get(n, n): t for n, t in columns.items()}
    for name, to in curated.cast.items():
        if name in columns:
            columns[name] = next(
                (t for pattern, t in _CAST_TYPES if pattern.fullmatch(to.strip().lower())),
                FieldType.ANY,
            )
    for name in curated.drop:
        columns.pop(name, None)
    return {**columns, **PARTITION_COLUMN_TYPES}
