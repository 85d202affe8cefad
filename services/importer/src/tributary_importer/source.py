"""Sources: third-party REST resources to import, declared in one YAML file.

```yaml
sources:
  posts:
    base_url: ${FAKEAPI_URL:-http://127.0.0.1:8081}
    path: /posts
    dataset: posts
    pagination: {kind: page_number, page_param: _page, size_param: _limit, page_size: 50}
  items:
    base_url: ...
    path: /changes/items
    dataset: items
    id_field: id
    pagination: {kind: link_header, size_param: _limit, page_size: 100, first_page: {_page: 1}}
    incremental: {field: updated_at, param: updated_since, initial: "2026-01-01T00:00:00Z",
                  lag_s: 0}
```
`${VAR}` and `${VAR:-default}` in strings are read from the environment (secrets too).
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tributary.dataset import DATASET_NAME
from tributary.errors import ConfigError, describe_problems

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class PaginationKind(StrEnum):
    """How a resource is paged."""

    NONE = "none"
    PAGE_NUMBER = "page_number"  # ?page=N&size=M until a short page
    OFFSET = "offset"  # ?offset=N&limit=M until a short page
    CURSOR = "cursor"  # ?cursor=C from the body until it is null
    LINK_HEADER = "link_header"  # follow Link: <…>; rel="next"


class AuthKind(StrEnum):
    """How requests authenticate."""

    NONE = "none"
    HEADER = "header"  # an API key in a header
    BEARER = "bearer"
    BASIC = "basic"


class AuthSpec(BaseModel):
    """Credentials come from the environment (Copilot fills it from SSM / Secrets Manager)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AuthKind = AuthKind.NONE
    header: str = "X-API-Key"
    secret: str = ""  # usually "${VENDOR_API_KEY}"
    username: str = ""


class PaginationSpec(BaseModel):
    """Parameters of the paging scheme."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: PaginationKind = PaginationKind.NONE
    page_size: int = Field(default=100, gt=0)
    size_param: str = "limit"
    page_param: str = "page"
    first_page: int = 1
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    next_cursor_path: str = "next_cursor"


class IncrementalSpec(BaseModel):
    """An incremental cursor: the field, where it starts, how it is sent, the look-back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    param: str  # query parameter carrying the lower bound (inclusive)
    initial: str
    lag_s: float = Field(default=0.0, ge=0)  # look back this far (ISO timestamp cursors)


class SourceSpec(BaseModel):
    """One source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    path: str
    dataset: str
    id_field: str = "id"
    records_path: str | None = None  # dotted path to the list in the body; None: the body
    params: dict[str, str] = Field(default_factory=dict)
    auth: AuthSpec = Field(default_factory=AuthSpec)
    pagination: PaginationSpec = Field(default_factory=PaginationSpec)
    incremental: IncrementalSpec | None = None
    rate_limit_rps: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=32)  # pages in flight (page_number, offset)
    timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if not DATASET_NAME.match(value):
            raise ValueError(f"dataset {value!r} must match {DATASET_NAME.pattern}")
        return value


class SourcesSpec(BaseModel):
    """The sources file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[str, SourceSpec]

    @field_validator("sources")
    @classmethod
    def _names(cls, value: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
                raise ValueError(f"source name {name!r} must be [a-z][a-z0-9_]*")
        return value


def _expand(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m[1], m[2] if m[2] is not None else ""), value)
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    return value


def load_sources(path: Path, env: dict[str, str] | None = None) -> dict[str, SourceSpec]:
    """Parse the sources file; `ConfigError` names the file and the bad entry."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read sources file {path}: {exc}; set SOURCES_CONFIG") from exc
    try:
        spec = SourcesSpec.model_validate(_expand(raw, dict(os.environ) if env is None else env))
    except ValidationError as exc:
        problems = describe_problems(exc.errors())
        raise ConfigError(f"{path}: invalid sources: {problems}") from exc
    return dict(spec.sources)
