"""Sources: third-party REST resources to import, declared in one YAML file.

```yaml
sources:
  posts:
    base_url: ${FAKEAPI_URL:-http://127.0.0.1:8081}
    path: /posts
    dataset: posts
    auth: {kind: header, header: X-API-Key, secret: "${VENDOR_API_KEY}"}
    pagination: {kind: page_number, page_param: _page, size_param: _limit, page_size: 50}
  items:
    base_url: ...
    path: /changes/items
    dataset: items
    id_field: id
    params: {_page: "1"}  # the first page; the Link header names the rest
    pagination: {kind: link_header, size_param: _limit, page_size: 100}
    incremental: {field: updated_at, param: updated_since, initial: "2026-01-01T00:00:00Z",
                  lag_s: 0}  # type: timestamp (what `initial` reads as; number, text)
```
`${VAR}` and `${VAR:-default}` in strings are read from the environment (an empty value counts
as unset). A source that names an unset `${VAR}` without a default loads, but cannot run: the
run fails with a `ConfigError` naming the variable. A secret must be a bare `${VAR}`: no
default, no literal value, so a deployment that lacks it fails instead of sending a development
key (development values live in the local stack's environment). A key sent as a query
parameter is `auth: {kind: query, param: api_key, secret: "${VAR}"}` under the same rule; a
`params` entry whose name looks like a credential (key, token, secret, auth, ...) is refused.
Credentials go to the origin of `base_url` only (a next-page link to another host gets none).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tributary.dataset import DATASET_NAME
from tributary.errors import ConfigError, describe_problems
from tributary_importer.cursor import CursorType, type_of

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
    QUERY = "query"  # an API key in a query parameter (`param`)


class AuthSpec(BaseModel):
    """Credentials come from the environment (Copilot fills it from SSM / Secrets Manager)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AuthKind = AuthKind.NONE
    header: str = "X-API-Key"
    secret: str = ""  # a bare "${VENDOR_API_KEY}" in the file (see the module docstring)
    username: str = ""
    param: str = "api_key"  # the query parameter of the `query` kind


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
    # number, timestamp or text; by default the type `initial` reads as. A record whose value
    # is of another type fails the run (records without the field land, cursor unmoved).
    type: CursorType | None = None

    @model_validator(mode="after")
    def _initial_has_the_type(self) -> IncrementalSpec:
        if self.type not in (None, CursorType.TEXT) and type_of(self.initial) is not self.type:
            raise ValueError(f"initial {self.initial!r} is not a {self.type} cursor value")
        return self

    def cursor_type(self) -> CursorType:
        """The declared type, else the type of `initial`."""
        return self.type if self.type is not None else type_of(self.initial)


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

    def loggable_params(self) -> frozenset[str]:
        """Query parameters whose values may appear in logs: the paging kind's own (page number
        and size, offset and size, the size of cursor paging; a `link_header` source may name
        its vendor's page parameter by setting `page_param`) and the cursor's lower bound.
        Every other value in a logged URL is redacted (a cursor token, an API key)."""
        paging = self.pagination
        names: set[str] = set()
        match paging.kind:
            case PaginationKind.PAGE_NUMBER:
                names = {paging.page_param, paging.size_param}
            case PaginationKind.OFFSET:
                names = {paging.offset_param, paging.size_param}
            case PaginationKind.CURSOR:
                names = {paging.size_param}
            case PaginationKind.LINK_HEADER:
                names = {paging.size_param}
                if "page_param" in paging.model_fields_set:
                    names.add(paging.page_param)
        if self.incremental is not None:
            names.add(self.incremental.param)
        names.discard(self.auth.param if self.auth.kind is AuthKind.QUERY else "")
        return frozenset(names)

    def loggable_paths(self) -> frozenset[str]:
        """URL paths that may appear in logs: the source's own. A next-page link elsewhere may
        carry a token in its path, so other paths are redacted."""
        return frozenset({urlsplit(self.base_url).path.rstrip("/") + self.path})

    def origin(self) -> tuple[str, str, int | None]:
        """(scheme, host, port) of `base_url`: credentials go to this origin only."""
        return origin_of(self.base_url)

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


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `url`, the port made explicit for http and https."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _PORTS.get(scheme)


_PORTS = {"http": 80, "https": 443}
# A query parameter with a name like these carries a credential: it belongs in `auth`.
_CREDENTIAL = re.compile(r"key|token|secret|passw|auth|signature|credential", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DeclaredSource:
    """A source from the file: its spec, and the environment variables it names that are
    unset (it cannot run until they are set)."""

    name: str
    spec: SourceSpec
    unset: tuple[str, ...] = ()

    def ready(self) -> SourceSpec:
        """The spec of a source that can run; `ConfigError` naming what it lacks otherwise."""
        if self.unset:
            raise ConfigError(
                f"source {self.name!r} needs environment variable(s) {', '.join(self.unset)}, "
                "which are not set (on AWS the importer's Copilot manifest sets them, secrets "
                "from SSM; locally the stack's environment does)"
            )
        return self.spec


def _expand(value: Any, env: Mapping[str, str], unset: list[str]) -> Any:
    """`value` with `${VAR}` / `${VAR:-default}` filled in; names of unset variables without a
    default are appended to `unset` (they expand to "")."""

    def fill(match: re.Match[str]) -> str:
        found = env.get(match[1]) or match[2]
        if found is None:
            if match[1] not in unset:
                unset.append(match[1])
            return ""
        return found

    if isinstance(value, str):
        return _VAR.sub(fill, value)
    if isinstance(value, dict):
        return {k: _expand(v, env, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, unset) for v in value]
    return value


def _check_secret(name: str, source: Any) -> None:
    """A secret is a bare `${VAR}` in `auth`: a default or a literal would be sent when the
    deployment lacks the real one; `params` hold no credentials."""
    params = source.get("params") if isinstance(source, dict) else None
    for param in params if isinstance(params, dict) else {}:
        if _CREDENTIAL.search(str(param)):
            raise ConfigError(
                f"sources.{name}.params.{param} looks like a credential; send it as "
                f'auth: {{kind: query, param: {param}, secret: "${{VARIABLE}}"}} (a bare '
                "${VARIABLE}, redacted from logs and sent to the source's origin only)"
            )
    auth = source.get("auth") if isinstance(source, dict) else None
    if not isinstance(auth, dict):
        return
    secret = auth.get("secret")
    if not secret:
        if auth.get("kind", AuthKind.NONE.value) != AuthKind.NONE.value:
            raise ConfigError(
                f"sources.{name}.auth.kind is {auth['kind']!r} but it names no secret; "
                'add secret: "${VARIABLE}" (read from the environment)'
            )
        return
    match = _VAR.fullmatch(str(secret))
    if match is None or match[2] is not None:
        raise ConfigError(
            f"sources.{name}.auth.secret must be a bare ${{VARIABLE}} with no default "
            f"(got {'a default' if match is not None else 'a literal value'}); secrets come "
            "from the environment, development values from the local stack's environment"
        )


def load_sources(path: Path, env: Mapping[str, str] | None = None) -> dict[str, DeclaredSource]:
    """Parse the sources file; `ConfigError` names the file and the bad entry."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read sources file {path}: {exc}; set SOURCES_CONFIG") from exc
    env = os.environ if env is None else env
    unset: dict[str, list[str]] = {}
    if isinstance(raw, dict) and isinstance(raw.get("sources"), dict):
        expanded = {}
        for name, source in raw["sources"].items():
            _check_secret(str(name), source)
            expanded[name] = _expand(source, env, unset.setdefault(str(name), []))
        raw = {**raw, "sources": expanded}
    try:
        spec = SourcesSpec.model_validate(raw)
    except ValidationError as exc:
        problems = describe_problems(exc.errors())
        missing = sorted({v for names in unset.values() for v in names})
        hint = f" (unset environment variables: {', '.join(missing)})" if missing else ""
        raise ConfigError(f"{path}: invalid sources: {problems}{hint}") from exc
    return {
        name: DeclaredSource(name, source, tuple(unset.get(name, ())))
        for name, source in spec.sources.items()
    }
