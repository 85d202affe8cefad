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

import orjson
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
from tributary_importer.source_extra import (
    END_VALUE,
    START_VALUE,
    Method,
    ResolveSpec,
    ResponseAction,
    WindowFields,
)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class PaginationKind(StrEnum):
    """How a resource is paged."""

    NONE = "none"
    PAGE_NUMBER = "page_number"  # ?page=N&size=M until a short page
    OFFSET = "offset"  # ?offset=N&limit=M until a short page
    CURSOR = "cursor"  # ?cursor=C from the body until it is null
    LINK_HEADER = "link_header"  # follow Link: <…>; rel="next"
    JSON_LINK = "json_link"  # follow the next page's URL at `next_url_path` in the body
    HEADER_CURSOR = "header_cursor"  # ?cursor=C from the response header `cursor_key`
    CUSTOM = "custom"  # `hook: "module:callable"` computes the next request


class AuthKind(StrEnum):
    """How requests authenticate."""

    NONE = "none"
    HEADER = "header"  # an API key in a header
    BEARER = "bearer"
    BASIC = "basic"
    QUERY = "query"  # an API key in a query parameter (`param`)
    OAUTH2 = "oauth2_client_credentials"  # a bearer token from `token_url`, cached


class AuthSpec(BaseModel):
    """Credentials come from the environment (Copilot fills it from SSM / Secrets Manager)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AuthKind = AuthKind.NONE
    header: str = "X-API-Key"
    secret: str = ""  # a bare "${VENDOR_API_KEY}" in the file (see the module docstring)
    username: str = ""
    param: str = "api_key"  # the query parameter of the `query` kind
    # oauth2_client_credentials: the client secret is `secret`
    token_url: str = ""
    client_id: str = ""
    scopes: tuple[str, ...] = ()
    expiry_margin_s: float = Field(default=60.0, ge=0)  # refresh this long before expiry
    default_expires_in_s: float = Field(default=3600.0, gt=0)  # when the answer has none

    @model_validator(mode="after")
    def _oauth2(self) -> AuthSpec:
        if self.kind is AuthKind.OAUTH2 and not (self.token_url and self.client_id):
            raise ValueError("oauth2_client_credentials needs token_url and client_id")
        return self


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
    cursor_body_path: str | None = None  # POST: the cursor goes at this dotted path of the body
    next_url_path: str = "next"  # json_link: dotted path of the next page's URL
    cursor_key: str = "X-Next-Cursor"  # header_cursor: the response header holding the cursor
    hook: str | None = None  # custom: "module:callable" (see `paginators.custom`)

    def size_in_query(self, has_body: bool) -> bool:
        """Whether the page size goes in the query as `size_param`. Left out only where the
        paging position itself travels in a JSON body (`cursor` with `cursor_body_path`, or a
        `custom` hook: the GraphQL case, whose size is in the body too), unless `size_param` is
        declared. Every other paging sends it, body or not: `page_number` and `offset` stop at
        a page shorter than `page_size` and step by it, so a vendor default below it would
        end the run early."""
        if self.kind is PaginationKind.NONE:
            return False
        in_body = self.kind is PaginationKind.CUSTOM or (
            self.kind is PaginationKind.CURSOR and self.cursor_body_path is not None
        )
        return not (has_body and in_body) or "size_param" in self.model_fields_set

    @model_validator(mode="after")
    def _hook(self) -> PaginationSpec:
        if (self.kind is PaginationKind.CUSTOM) != (self.hook is not None):
            raise ValueError("a hook is declared with kind: custom, and only then")
        if self.hook is not None and not re.fullmatch(r"[\w.]+:[\w.]+", self.hook):
            raise ValueError(f"hook {self.hook!r} must be a dotted 'module:callable'")
        return self


class IncrementalSpec(WindowFields):
    """An incremental cursor: the field, where it starts, how it is sent, the look-back, and
    optionally where it ends and how the range is sliced into windows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    # query parameter carrying the lower bound (inclusive); a POST body may carry it instead
    # ("{incremental.start_value}" in `json`)
    param: str | None = None
    initial: str
    lag_s: float = Field(default=0.0, ge=0)  # look back this far (ISO timestamp cursors)
    # number, timestamp or text; by default the type `initial` reads as. A record whose value
    # is of another type fails the run (records without the field land, cursor unmoved).
    type: CursorType | None = None

    @model_validator(mode="after")
    def _initial_has_the_type(self) -> IncrementalSpec:
        if self.type not in (None, CursorType.TEXT) and type_of(self.initial) is not self.type:
            raise ValueError(f"initial {self.initial!r} is not a {self.type} cursor value")
        if self.step is not None and self.cursor_type() is not CursorType.TIMESTAMP:
            raise ValueError("step slices timestamp cursors only")
        for bound in (self.end_value,):
            if bound is not None and type_of(bound) is not self.cursor_type():
                raise ValueError(f"end_value {bound!r} is not a {self.cursor_type()} value")
        return self

    def cursor_type(self) -> CursorType:
        """The declared type, else the type of `initial`."""
        return self.type if self.type is not None else type_of(self.initial)


class SourceSpec(BaseModel):
    """One source."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

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
    method: Method = Method.GET
    json_body: dict[str, Any] | None = Field(default=None, alias="json")  # the POST body
    # path placeholders filled from each parent record: `/posts/{post_id}/comments`
    resolve: dict[str, ResolveSpec] = Field(default_factory=dict)
    include_from_parent: tuple[str, ...] = ()  # copied into each child as `_<parent>_<field>`
    response_actions: tuple[ResponseAction, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> SourceSpec:
        placeholders = set(re.findall(r"\{(\w+)\}", self.path))
        if placeholders != set(self.resolve):
            raise ValueError(
                f"path placeholders {sorted(placeholders)} must be exactly the resolve keys "
                f"{sorted(self.resolve)}"
            )
        if len({r.resource for r in self.resolve.values()}) > 1:
            raise ValueError("resolve names one parent resource")
        if self.resolve and self.incremental is not None and self.incremental.step is not None:
            raise ValueError("a child resource is sliced by parent, not by step")
        if self.include_from_parent and not self.resolve:
            raise ValueError("include_from_parent needs a parent (resolve)")
        body = orjson.dumps(self.json_body or {}).decode()
        if self.json_body is not None and self.method is not Method.POST:
            raise ValueError("a json body is sent with method: POST")
        if (where := _embedded(self.json_body, "json")) is not None:
            raise ValueError(
                f"{where}: {START_VALUE} / {END_VALUE} must be a whole string value (it is "
                "replaced by the bound, whose JSON type it takes), not inside a string; pass it "
                "as a GraphQL variable"
            )
        inc = self.incremental
        if inc is not None and inc.param is None and START_VALUE not in body:
            raise ValueError(f"incremental needs param, or {START_VALUE} in the json body")
        if (
            inc is not None
            and inc.step is not None
            and (inc.end_param is None) == (END_VALUE not in body)
        ):
            raise ValueError(f"step needs end_param or {END_VALUE} in the json body (one)")
        if self.pagination.cursor_body_path and self.method is not Method.POST:
            raise ValueError("cursor_body_path needs method: POST")
        return self

    def parent(self) -> str | None:
        """The parent source's name, for a child resource."""
        return next((r.resource for r in self.resolve.values()), None)

    def windowed(self) -> bool:
        """Whether runs are sliced into checkpointed windows (or parents)."""
        inc = self.incremental
        body = orjson.dumps(self.json_body or {}).decode()
        return bool(self.resolve) or (
            inc is not None
            and (
                inc.step is not None
                or inc.end_param is not None
                or inc.end_value is not None
                or END_VALUE in body
            )
        )

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
            case PaginationKind.CURSOR | PaginationKind.HEADER_CURSOR | PaginationKind.JSON_LINK:
                names = {paging.size_param}
            case PaginationKind.LINK_HEADER:
                names = {paging.size_param}
                if "page_param" in paging.model_fields_set:
                    names.add(paging.page_param)
        if self.incremental is not None:
            names.update(
                p for p in (self.incremental.param, self.incremental.end_param) if p is not None
            )
        names.discard(self.auth.param if self.auth.kind is AuthKind.QUERY else "")
        return frozenset(names)

    def loggable_paths(self) -> frozenset[str]:
        """URL paths that may appear in logs: the source's own. A next-page link elsewhere may
        carry a token in its path, so other paths are redacted."""
        path = urlsplit(self.base_url).path.rstrip("/") + self.path
        if not self.resolve:
            return frozenset({path})
        # a child's path holds parent fields: the template stands for them in `redact_url`
        return frozenset({re.sub(r"\{\w+\}", "*", path)})

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
        for name, spec in value.items():
            parent = spec.parent()
            if parent is not None and parent not in value:
                raise ValueError(f"{name}: resolve names {parent!r}, which is not a source")
            if parent is not None and value[parent].resolve:
                raise ValueError(f"{name}: its parent {parent!r} is a child resource itself")
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


def _embedded(body: Any, where: str) -> str | None:
    """The dotted path of a string that holds a bound placeholder inside other text."""
    if isinstance(body, str):
        inside = any(p in body and body != p for p in (START_VALUE, END_VALUE))
        return where if inside else None
    if isinstance(body, dict | list):
        for key, value in body.items() if isinstance(body, dict) else enumerate(body):
            if (found := _embedded(value, f"{where}.{key}")) is not None:
                return found
    return None


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
