"""The dataset registry: one YAML file, shared by every service, declaring what may be ingested.

```yaml
datasets:
  posts:
    id_field: id            # the producer's id field, used as the envelope id when present
    partition_key: userId   # Kinesis partition key field (else the envelope id)
    schema:
      fields:
        id: {type: integer, required: true}
    limits: {max_record_bytes: 1048576}
    version_field: updated_at  # versions of one id are kept apart: envelope id `<id>@<version>`
```
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tributary.curated import CuratedSpec, curated_columns
from tributary.derived import DerivedSpec, Table, check_registry, curated_tables
from tributary.errors import ConfigError, describe_problems
from tributary.quality import QualityRule, QualityRuleSpec, check_columns
from tributary.schema import FieldType, RecordValidator, SchemaSpec
from tributary.version import version_text, versioned_id

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
KINESIS_MAX_RECORD_BYTES = 1024 * 1024


# Types a version field may have: ones that order versions and spell as one id. Not `number`:
# a JSON decoder's float merges versions that differ past its precision into one id (the
# second then dropped as a duplicate); a decimal version can be declared `string`.
VERSION_TYPES = frozenset({FieldType.TIMESTAMP, FieldType.INTEGER, FieldType.STRING})
# A string id of a versioned dataset may not hold '@': "a@b" at version "c" and "a" at version
# "b@c" would both be "a@b@c" (the validator refuses such ids when the field has no pattern).
NO_AT = "^[^@]*$"


class LimitsSpec(BaseModel):
    """Per-dataset limits (the API's global limits still apply)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_record_bytes: int = Field(
        default=KINESIS_MAX_RECORD_BYTES, gt=0, le=KINESIS_MAX_RECORD_BYTES
    )


class DatasetSpec(BaseModel):
    """One dataset's entry in the registry file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    id_field: str | None = None
    partition_key: str | None = None
    schema_: SchemaSpec = Field(default_factory=SchemaSpec, alias="schema")
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    curated: CuratedSpec = Field(default_factory=CuratedSpec)
    # The field whose value tells versions of one record apart (e.g. `updated_at`): every writer
    # then makes the envelope id `<id>@<version>` (tributary.version).
    version_field: str | None = None
    # Data-quality rules (DQDL rule types) the curate job checks on each run (tributary.quality).
    quality: list[QualityRuleSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _version_field(self) -> DatasetSpec:
        name = self.version_field
        if name is None:
            return self
        if self.id_field is None:
            raise ValueError(f"version_field {name!r} needs an id_field: versions of what?")
        spec = self.schema_.fields.get(name)
        if spec is None or spec.type not in VERSION_TYPES or not spec.required or spec.nullable:
            kinds = "|".join(sorted(VERSION_TYPES))
            raise ValueError(
                f"version_field {name!r} must be a schema field with type {kinds}, "
                "required: true and not nullable (every version of a record must name itself)"
            )
        return self

    @model_validator(mode="after")
    def _quality_columns(self) -> DatasetSpec:
        columns = curated_columns(self.schema_, self.curated)
        for rule in self.quality:
            check_columns(rule.parsed(), columns, self.curated.rename)
        return self


class RegistrySpec(BaseModel):
    """The registry file as a whole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    datasets: dict[str, DatasetSpec]
    derived: dict[str, DerivedSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tables(self) -> RegistrySpec:
        for name in self.derived:
            if not DATASET_NAME.match(name):
                raise ValueError(f"derived table name {name!r} must match {DATASET_NAME.pattern}")
        check_registry(
            {n: d.schema_ for n, d in self.datasets.items()},
            {n: d.curated for n, d in self.datasets.items()},
            self.derived,
        )
        return self

    @field_validator("datasets")
    @classmethod
    def _names(cls, value: dict[str, DatasetSpec]) -> dict[str, DatasetSpec]:
        for name in value:
            if not DATASET_NAME.match(name):
                raise ValueError(
                    f"dataset name {name!r} must match {DATASET_NAME.pattern} "
                    "(it becomes an S3 prefix and a Glue table name)"
                )
        return value


@dataclass(frozen=True, slots=True)
class Dataset:
    """A registered dataset with its compiled validator."""

    name: str
    id_field: str | None
    partition_key: str | None
    max_record_bytes: int
    validator: RecordValidator = field(repr=False, compare=False)
    schema: SchemaSpec = field(default_factory=SchemaSpec, repr=False, compare=False)
    curated: CuratedSpec = field(default_factory=CuratedSpec, repr=False, compare=False)
    version_field: str | None = None
    version_kind: FieldType = FieldType.ANY
    quality: tuple[QualityRule, ...] = field(default=(), repr=False, compare=False)

    def envelope_id(self, record: Any) -> str | None:
        """The envelope id every writer gives `record`: the producer's id, and for a dataset with
        a `version_field` `<id>@<version>` (one id per version); None without a producer id."""
        rid = self.record_id(record)
        if rid is None or self.version_field is None:
            return rid
        return versioned_id(rid, version_text(record.get(self.version_field), self.version_kind))

    def record_id(self, record: Any) -> str | None:
        """The producer's id for `record`, or None when the dataset names none or it is absent."""
        if self.id_field is None or not isinstance(record, dict):
            return None
        return scalar_text(record.get(self.id_field))

    def partition_key_for(self, record: Any, record_id: str) -> str:
        """The Kinesis partition key: the configured field's value, else the record id (for a
        versioned dataset the producer's id: the versions of one record share a shard)."""
        if self.partition_key is not None and isinstance(record, dict):
            key = scalar_text(record.get(self.partition_key))
            if key is not None and len(key) <= 256 and key.isascii():
                return key
        if self.version_field is not None:
            own = self.record_id(record)
            if own is not None and own.isascii():
                return own[:256]
        return record_id[:256]


def _versioned_schema(spec: DatasetSpec) -> SchemaSpec:
    """The schema records are validated by: for a versioned dataset with a string id field of no
    pattern of its own, that field refuses '@' (ids `<id>@<version>` must split one way)."""
    schema, id_field = spec.schema_, spec.id_field
    field = schema.fields.get(id_field) if id_field is not None else None
    if spec.version_field is None or field is None or id_field is None:
        return schema
    if field.type is not FieldType.STRING or field.pattern is not None:
        return schema
    fields = {**schema.fields, id_field: field.model_copy(update={"pattern": NO_AT})}
    return schema.model_copy(update={"fields": fields})


def scalar_text(value: Any) -> str | None:
    """A JSON scalar as id text: strings as they are, numbers and booleans as JSON spells them;
    None for null, empty strings, objects and arrays."""
    kind = type(value)
    if kind is str:
        return value or None
    if kind is int or kind is float:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    return None


class DatasetRegistry(Mapping[str, Dataset]):
    """Datasets by name, loaded from the registry file."""

    def __init__(
        self, datasets: Mapping[str, Dataset], derived: Mapping[str, DerivedSpec] | None = None
    ) -> None:
        self._datasets = dict(datasets)
        self.derived: dict[str, DerivedSpec] = dict(derived or {})

    def tables(self) -> list[Table]:
        """Every curated table: datasets, child tables, current-state and derived tables."""
        return curated_tables({n: d.curated for n, d in self._datasets.items()}, self.derived)

    def __getitem__(self, name: str) -> Dataset:
        return self._datasets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._datasets)

    def __len__(self) -> int:
        return len(self._datasets)

    @classmethod
    def from_spec(cls, spec: RegistrySpec) -> DatasetRegistry:
        """Compile a parsed registry."""
        return cls(
            {
                name: Dataset(
                    name=name,
                    id_field=d.id_field,
                    partition_key=d.partition_key,
                    max_record_bytes=d.limits.max_record_bytes,
                    validator=RecordValidator(_versioned_schema(d)),
                    schema=d.schema_,
                    curated=d.curated,
                    version_field=d.version_field,
                    version_kind=(
                        d.schema_.fields[d.version_field].type
                        if d.version_field is not None
                        else FieldType.ANY
                    ),
                    quality=tuple(rule.parsed() for rule in d.quality),
                )
                for name, d in spec.datasets.items()
            },
            spec.derived,
        )

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> DatasetRegistry:
        """Parse registry YAML; raises `ConfigError` naming the file and the bad entry."""
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        try:
            spec = RegistrySpec.model_validate(raw)
        except ValidationError as exc:
            problems = describe_problems(exc.errors())
            raise ConfigError(f"{source}: invalid dataset registry: {problems}") from exc
        return cls.from_spec(spec)

    @classmethod
    def from_file(cls, path: Path) -> DatasetRegistry:
        """Load the registry file at `path`."""
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(
                f"cannot read dataset registry {path}: {exc.strerror}; set DATASETS_CONFIG"
            ) from exc
        return cls.from_yaml(text, source=str(path))
