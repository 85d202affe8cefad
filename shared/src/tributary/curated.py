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
```
Curated rows carry the envelope as `_id`, `_source`, `_received_at` next to the data columns.
Every key is optional; without the block a dataset is curated with these defaults.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

    @field_validator("rename")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value.values():
            if not _COLUMN.match(target):
                raise ValueError(f"column name {target!r} must match {_COLUMN.pattern}")
        return value
