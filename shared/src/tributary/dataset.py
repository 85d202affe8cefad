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
```
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tributary.curated import CuratedSpec
from tributary.errors import ConfigError, describe_problems
from tributary.schema import RecordValidator, SchemaSpec

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
KINESIS_MAX_RECORD_BYTES = 1024 * 1024


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


class RegistrySpec(BaseModel):
    """The registry file as a whole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    datasets: dict[str, DatasetSpec]

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

    def record_id(self, record: Any) -> str | None:
        """The producer's id for `record`, or None when the dataset names none or it is absent."""
        if self.id_field is None or not isinstance(record, dict):
            return None
        return scalar_text(record.get(self.id_field))

    def partition_key_for(self, record: Any, record_id: str) -> str:
        """The Kinesis partition key: the configured field's value, else the record id."""
        if self.partition_key is not None and isinstance(record, dict):
            key = scalar_text(record.get(self.partition_key))
            if key is not None and len(key) <= 256 and key.isascii():
                return key
        return record_id[:256]


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

    def __init__(self, datasets: Mapping[str, Dataset]) -> None:
        self._datasets = dict(datasets)

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
                    validator=RecordValidator(d.schema_),
                    schema=d.schema_,
                    curated=d.curated,
                )
                for name, d in spec.datasets.items()
            }
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
