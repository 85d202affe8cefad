"""Tables computed from curated datasets: the registry's `derived:` section (joins), and the names
of every table the curate job publishes (datasets, their child and current-state tables).

```yaml
derived:
  posts_with_users:
    base: posts                   # a curated dataset (its current state when it declares one)
    joins:
      - dataset: users            # joined on its current state when it declares `current`
        keys: {userId: id}        # base column → joined column
        how: left                 # inner | left (left: every base row, with null columns
                                  # while the joined dataset has no curated rows)
        columns: [name, email]    # the joined columns to take (default: all data columns)
        prefix: user_             # → user_name, user_email
    filter: "user_id IS NOT NULL" # optional Spark SQL condition on the joined rows
    columns: [id, title, user_name]  # optional: the columns kept, in this order
```
A derived table is recomputed whole from its curated inputs whenever one of them changed, and
published as a new snapshot (`tributary_curate.snapshots`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tributary.schema import FieldType

if TYPE_CHECKING:
    from tributary.curated import CuratedSpec
    from tributary.schema import SchemaSpec

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CURRENT_SUFFIX = "_current"


class JoinHow(StrEnum):
    """Which base rows a join keeps."""

    INNER = "inner"
    LEFT = "left"


class JoinSpec(BaseModel):
    """One join of a derived table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    keys: dict[str, str] = Field(min_length=1)  # base column → joined column
    how: JoinHow = JoinHow.LEFT
    columns: list[str] | None = None
    prefix: str = ""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError(f"prefix {value!r} must be a column-name prefix ([A-Za-z0-9_])")
        return value


class DerivedSpec(BaseModel):
    """One entry of the registry's `derived:` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    base: str
    joins: list[JoinSpec] = Field(default_factory=list)
    filter: str | None = None
    columns: list[str] | None = None

    def inputs(self) -> tuple[str, ...]:
        """The curated datasets it is computed from: a change in any makes it stale."""
        return tuple(dict.fromkeys([self.base, *(j.dataset for j in self.joins)]))


class TableKind(StrEnum):
    """How a table is published."""

    DATASET = "dataset"  # append-only, partitioned
    CHILD = "child"  # append-only, partitioned like its parent (relationalize)
    CURRENT = "current"  # whole snapshots: the latest row of each key
    DERIVED = "derived"  # whole snapshots: joins


@dataclass(frozen=True, slots=True)
class Table:
    """A curated table: its name, kind and the datasets it is made from."""

    name: str
    kind: TableKind
    inputs: tuple[str, ...]

    @property
    def snapshot(self) -> bool:
        """Whether it is published as whole snapshots (else appended to)."""
        return self.kind in (TableKind.CURRENT, TableKind.DERIVED)


def child_table(dataset: str, field: str) -> str:
    """The child table a relationalized array field becomes."""
    return f"{dataset}_{field}"


def curated_tables(
    curated: Mapping[str, CuratedSpec], derived: Mapping[str, DerivedSpec]
) -> list[Table]:
    """Every table the curate job publishes, datasets first, in registry order."""
    tables: list[Table] = []
    for name, spec in curated.items():
        tables.append(Table(name, TableKind.DATASET, (name,)))
        tables += [
            Table(child_table(name, f), TableKind.CHILD, (name,)) for f in spec.relationalize
        ]
        if spec.current is not None:
            tables.append(Table(name + CURRENT_SUFFIX, TableKind.CURRENT, (name,)))
    tables += [Table(n, TableKind.DERIVED, d.inputs()) for n, d in derived.items()]
    return tables


def check_registry(
    schemas: Mapping[str, SchemaSpec],
    curated: Mapping[str, CuratedSpec],
    derived: Mapping[str, DerivedSpec],
) -> None:
    """Raise `ValueError` naming the entry when a relationalized field is no array of objects, a
    derived table names an unknown dataset, or two tables would share a name."""
    for name, spec in curated.items():
        for field in spec.relationalize:
            declared = schemas[name].fields.get(field)
            items = declared.items if declared is not None else None
            if declared is None or items is None or items.type is not FieldType.OBJECT:
                raise ValueError(
                    f"{name}: curated.relationalize names {field!r}, which must be a declared "
                    "array field whose items are objects with fields"
                )
            if not items.fields:
                raise ValueError(f"{name}: relationalized {field!r} must declare items.fields")
    for name, entry in derived.items():
        for used in entry.inputs():
            if used not in curated:
                raise ValueError(f"derived {name}: unknown dataset {used!r}")
        for column in entry.columns or []:
            if not _COLUMN.match(column):
                raise ValueError(f"derived {name}: column name {column!r} is not valid")
    seen: set[str] = set()
    for table in curated_tables(curated, derived):
        if table.name in seen:
            raise ValueError(f"table name {table.name!r} is used twice (dataset, child, derived)")
        seen.add(table.name)
