"""Pagination hooks a source may name (`pagination: {kind: custom, hook: "module:callable"}`).

`relay_next` pages a GraphQL relay connection: the body's first `pageInfo` (found under
`data.<field>`) says `hasNextPage` and `endCursor`; the next request carries the cursor as the
body's `variables.after`. (`kind: cursor` with `cursor_body_path` cannot see `hasNextPage`, so
it asks once more and stops on the empty page; this hook does not.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tributary_importer.paginators import PageRequest, with_path


def relay_next(request: PageRequest, body: Any, headers: Mapping[str, str]) -> PageRequest | None:
    """The request for the page after a relay connection's `endCursor`, or None at the end."""
    data = body.get("data") if isinstance(body, dict) else None
    for connection in (data or {}).values() if isinstance(data, dict) else ():
        info = connection.get("pageInfo") if isinstance(connection, dict) else None
        if isinstance(info, dict):
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return None
            return replace(
                request, json=with_path(request.json, "variables.after", info["endCursor"])
            )
    return None
