"""The request after a page, for the paginators whose next request comes from the answer:
`json_link` (a URL in the body), `header_cursor` (a cursor in a header), `cursor` with the
cursor in a POST body, and `custom` (a hook named `module:callable`).

A custom hook is called as `hook(request, body, headers)` with the request that fetched the
page (a `PageRequest`), its decoded JSON body and its headers, and returns the next
`PageRequest`, or None after the last page. It runs on the event loop: it must not block.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin

from tributary.errors import ConfigError, PermanentError
from tributary_importer.source import PaginationKind, PaginationSpec


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A page request: URL, query parameters, and the JSON body of a POST."""

    url: str
    params: dict[str, str]
    json: dict[str, Any] | None = None
    method: str = "GET"
    extra: dict[str, str] = field(default_factory=dict)  # free for a custom hook's own state


Hook = Callable[[PageRequest, Any, Mapping[str, str]], PageRequest | None]


def load_hook(dotted: str) -> Hook:
    """The callable `module:attr.attr`; `ConfigError` naming what is missing."""
    module_name, _, attrs = dotted.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for attr in attrs.split("."):
            found = getattr(found, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"pagination hook {dotted!r} cannot be loaded: {exc}") from exc
    if not callable(found):
        raise ConfigError(f"pagination hook {dotted!r} is not callable")
    hook: Hook = found
    return hook


def at_path(body: Any, path: str) -> Any:
    """The value at a dotted path of a JSON body (None when absent)."""
    for part in path.split("."):
        if part:
            body = body.get(part) if isinstance(body, dict) else None
    return body


def with_path(body: dict[str, Any] | None, path: str, value: Any) -> dict[str, Any]:
    """A copy of `body` with `value` at the dotted `path` (intermediate objects created)."""
    out = copy.deepcopy(body) if body is not None else {}
    node = out
    *parents, last = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value
    return out


def next_request(
    paging: PaginationSpec,
    request: PageRequest,
    body: Any,
    headers: Mapping[str, str],
    hook: Hook | None = None,
) -> PageRequest | None:
    """The request after `request`'s page, for the kinds this module handles."""
    match paging.kind:
        case PaginationKind.JSON_LINK:
            link = at_path(body, paging.next_url_path)
            if not isinstance(link, str) or not link:
                return None
            # the link holds the whole query (size included); relative links are resolved
            return replace(request, url=urljoin(request.url, link), params={})
        case PaginationKind.HEADER_CURSOR:
            cursor = headers.get(paging.cursor_key)
            if not cursor:
                return None
            return replace(request, params={**request.params, paging.cursor_param: cursor})
        case PaginationKind.CURSOR if paging.cursor_body_path:
            cursor = at_path(body, paging.next_cursor_path)
            if cursor is None or cursor == "":
                return None
            return replace(request, json=with_path(request.json, paging.cursor_body_path, cursor))
        case PaginationKind.CUSTOM:
            assert hook is not None
            try:
                found = hook(request, body, headers)
            except (
                Exception
            ) as exc:  # user code: any failure of it is this source's, not the loop's
                raise PermanentError(
                    f"pagination hook {paging.hook!r} raised {type(exc).__name__}: {exc}"
                ) from exc
            if found is not None and not isinstance(found, PageRequest):
                raise PermanentError(
                    f"pagination hook {paging.hook!r} returned a {type(found).__name__}, not a "
                    "PageRequest or None"
                )
            return found
    raise AssertionError(f"{paging.kind} is not paged here")  # pragma: no cover


def handles(paging: PaginationSpec) -> bool:
    """Whether `next_request` computes this source's next request."""
    return paging.kind in (
        PaginationKind.JSON_LINK,
        PaginationKind.HEADER_CURSOR,
        PaginationKind.CUSTOM,
    ) or (paging.kind is PaginationKind.CURSOR and paging.cursor_body_path is not None)
