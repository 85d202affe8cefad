"""Vendor variants the importer's richer sources are tested against (same fault knobs as the
rest of the fake; request counts per path at `GET /__admin/variants`).

- `POST /oauth/token` — OAuth2 client credentials (form `grant_type=client_credentials`,
  `client_id`, `client_secret`; FAKEAPI_OAUTH_CLIENT_ID / FAKEAPI_OAUTH_SECRET, defaults
  `tributary` / `fake-oauth-secret`): `{"access_token", "token_type", "expires_in"}`; a wrong
  client is 401 `invalid_client`. `PUT /__admin/oauth {"expires_in": s, "revoke": true}` sets
  the lifetime of new tokens and revokes every issued one; `"refuse": true` refuses every token.
- `GET /oauth/{resource}?limit=&after=` — needs a live bearer token (401 otherwise); paged like
  `/hcursor`.
- `GET /jsonlink/{resource}?page=&per_page=` — `{"results": [...], "next": "<relative URL>" |
  null}`.
- `GET /hcursor/{resource}?limit=&after=` — a list; the next cursor in `X-Next-Cursor`.
- `POST /graphql` — `{"query", "variables"}` executed by graphql-core (`graphql_items`):
  `items(since, after, first)` over the changing items (`updated_at >= since`), a relay
  connection `{nodes, pageInfo {hasNextPage endCursor}}`; only the selected fields come back,
  and an invalid query (no selection set, an unused variable, an unknown field) is HTTP 200
  with `errors`, as real servers answer; a body that is no GraphQL request is 400, and so is
  a paging query parameter (`?limit=`, `page`, `offset`, `cursor`, `per_page`, `first`,
  `after`): a GraphQL POST pages in its body, and a client that pages by query parameters
  there is paging nothing. Other query parameters (`?api_key=` auth) are accepted.
- `POST /search/{resource}?page=|offset=&limit=` — a REST search: the JSON body
  `{"filter": {field: value}}` selects records, the query pages them; `limit` defaults to 10
  (at most 100), so a client that sends no page size gets short pages.
- `GET /posts/{id}/comments` — the post's comments; 404 for a post without any (every 25th
  post has none) or an unknown post.
- `GET /users/{id}/items?updated_since=&updated_before=&_page=&_limit=` — the changing items
  of one user (`(id - 1) % 10 + 1`), `updated_since <= updated_at < updated_before`, oldest
  first.
- `GET /windowed/events?since=&until=&_page=&_limit=` — events spread over 2025 (one every 7
  hours), `since <= occurred_at < until`; both bounds required, at most 31 days apart (400
  otherwise), as vendors that cap a query's range do.
- `GET /archive/{resource}` — always 404 "no archived records" (an empty collection a vendor
  answers with 404).
- `POST /__admin/reorder {"resource", "last": [ids]}` — lists those records last.
- `GET /quota/{resource}[?as=503]` — a vendor over its quota: 200 `{"error": "quota exceeded",
  "results": []}`, or with `as=503` a 503 saying the same.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from tributary_fakeapi import graphql_items
from tributary_fakeapi.data import Dataset

Faulty = Callable[..., Awaitable[Response | None]]
EVENTS_FROM = datetime(2025, 1, 1, tzinfo=UTC)
EVENT_EVERY = timedelta(hours=7)
MAX_WINDOW = timedelta(days=31)
USERS = 10
GRAPHQL_PAGING = frozenset({"limit", "page", "offset", "cursor", "per_page", "first", "after"})
SEARCH_PAGE, SEARCH_MAX = 10, 100


class OAuthKnobs(BaseModel):
    """Token lifetime, and whether to revoke every token issued so far."""

    expires_in: int = Field(default=3600, ge=1)
    revoke: bool = False
    refuse: bool = False  # answer 401 to every token (a client without the resource's scope)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def events(scale: int) -> list[dict[str, Any]]:
    """The windowed resource: 1,200 × scale events, one every 7 hours from 2025-01-01."""
    kinds = ("view", "click", "purchase")
    return [
        {
            "id": f"ev-{i:06d}",
            "type": kinds[i % 3],
            "occurred_at": _iso(EVENTS_FROM + i * EVENT_EVERY / scale),
        }
        for i in range(1, 1200 * scale + 1)
    ]


def _encode(n: int) -> str:
    return base64.urlsafe_b64encode(f"o{n}".encode()).decode()


def _decode(cursor: str | None) -> int:
    if not cursor:
        return 0
    return int(base64.urlsafe_b64decode(cursor.encode())[1:])


class Reorder(BaseModel):
    """`POST /__admin/reorder`: list these ids of a resource last (the rest by id; `[]` is the
    original order), as a listing by `updated_at` reorders when records change."""

    resource: str
    last: list[int] = Field(default_factory=list)


def router(state: dict[str, Any], faulty: Faulty) -> APIRouter:
    """The variant routes, over the app's own data and fault knobs."""
    api = APIRouter()
    client_id = os.environ.get("FAKEAPI_OAUTH_CLIENT_ID", "tributary")
    client_secret = os.environ.get("FAKEAPI_OAUTH_SECRET", "fake-oauth-secret")
    tokens: dict[str, float] = {}  # token -> expiry (monotonic)
    knobs = {"oauth": OAuthKnobs()}
    counts: Counter[str] = Counter()
    all_events: list[dict[str, Any]] = []

    def data() -> Dataset:
        dataset: Dataset = state["data"]
        return dataset

    async def gate(request: Request, *, key: bool = True) -> Response | None:
        counts[request.url.path] += 1
        return await faulty(request, check_key=key)

    def rows(resource: str) -> list[dict[str, Any]] | None:
        return data().resources.get(resource)

    def by_cursor(items: list[dict[str, Any]], limit: int, after: str | None) -> Response:
        start = _decode(after)
        end = start + limit
        headers = {"X-Next-Cursor": _encode(end)} if end < len(items) else {}
        return _json(items[start:end], headers=headers)

    @api.get("/__admin/variants")
    async def variant_stats() -> Response:
        return _json({"paths": dict(counts), "tokens_issued": len(tokens)})

    @api.post("/__admin/reorder")
    async def reorder(new: Reorder) -> Response:
        rows = data().resources[new.resource]
        moved = [r for r in rows if r["id"] in new.last]
        rows[:] = sorted((r for r in rows if r["id"] not in new.last), key=lambda r: r["id"])
        rows.extend(moved)
        return _json({"last": [r["id"] for r in moved]})

    @api.put("/__admin/oauth")
    async def oauth_knobs(new: OAuthKnobs) -> Response:
        knobs["oauth"] = new
        if new.revoke:
            tokens.clear()
        return _json(new.model_dump())

    @api.post("/oauth/token")
    async def token(request: Request) -> Response:
        if (fault := await gate(request, key=False)) is not None:
            return fault
        form = dict(parse_qsl((await request.body()).decode()))  # no python-multipart here
        if form.get("grant_type") != "client_credentials":
            return _json({"error": "unsupported_grant_type"}, 400)
        if form.get("client_id") != client_id or form.get("client_secret") != client_secret:
            return _json({"error": "invalid_client"}, 401)
        issued = "at-" + secrets.token_hex(16)
        lifetime = knobs["oauth"].expires_in
        tokens[issued] = time.monotonic() + lifetime
        body = {"access_token": issued, "token_type": "Bearer", "expires_in": lifetime}
        return _json(body)

    @api.get("/oauth/{resource}")
    async def oauth_resource(
        resource: str, request: Request, limit: int = 10, after: str | None = None
    ) -> Response:
        if (fault := await gate(request, key=False)) is not None:
            return fault
        header = request.headers.get("authorization", "")
        expiry = tokens.get(header.removeprefix("Bearer "))
        live = expiry is not None and expiry >= time.monotonic() and not knobs["oauth"].refuse
        if not header.startswith("Bearer ") or not live:
            return _json({"error": "invalid_token"}, 401, {"WWW-Authenticate": "Bearer"})
        items = rows(resource)
        if items is None:
            return _json({"error": f"no resource {resource!r}"}, 404)
        return by_cursor(items, limit, after)

    @api.get("/hcursor/{resource}")
    async def header_cursor(
        resource: str, request: Request, limit: int = 10, after: str | None = None
    ) -> Response:
        if (fault := await gate(request)) is not None:
            return fault
        items = rows(resource)
        if items is None:
            return _json({"error": f"no resource {resource!r}"}, 404)
        return by_cursor(items, limit, after)

    @api.get("/jsonlink/{resource}")
    async def json_link(
        resource: str, request: Request, page: int = 1, per_page: int = 10
    ) -> Response:
        if (fault := await gate(request)) is not None:
            return fault
        items = rows(resource)
        if items is None or page < 1 or per_page < 1:
            return _json({"error": "no such resource or page"}, 404)
        chunk = items[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(items)
        nxt = f"/jsonlink/{resource}?page={page + 1}&per_page={per_page}" if more else None
        return _json({"results": chunk, "next": nxt, "count": len(items)})

    def items_page(
        since: str, after: str | None, first: int
    ) -> tuple[list[dict[str, Any]], bool, str | None]:
        ordered = sorted(
            (i for i in data().resources["items"] if i["updated_at"] >= since),
            key=lambda i: (i["updated_at"], i["id"]),
        )
        start = _decode(after)
        nodes = ordered[start : start + first]
        end = start + len(nodes)
        return nodes, end < len(ordered), _encode(end) if nodes else None

    served = graphql_items.schema(items_page)

    @api.post("/graphql")
    async def graphql(request: Request) -> Response:
        if (fault := await gate(request)) is not None:
            return fault
        unexpected = sorted({k for k, _ in parse_qsl(request.url.query)} & GRAPHQL_PAGING)
        if unexpected:
            said = f"unexpected query parameters {unexpected}"
            return _json({"errors": [{"message": said}]}, 400)
        try:
            body = orjson.loads(await request.body())
            query, variables = body["query"], body.get("variables")
            if not isinstance(query, str) or not isinstance(variables, dict | None):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            # not a GraphQL request at all: GraphQL over HTTP answers 400
            return _json({"errors": [{"message": "expected {query, variables}"}]}, 400)
        return _json(graphql_items.execute(served, query, variables))

    @api.post("/search/{resource}")
    async def search(
        resource: str,
        request: Request,
        page: int | None = None,
        offset: int | None = None,
        limit: int = SEARCH_PAGE,
    ) -> Response:
        if (fault := await gate(request)) is not None:
            return fault
        items = rows(resource)
        if items is None:
            return _json({"error": f"no resource {resource!r}"}, 404)
        try:
            wanted = orjson.loads(await request.body()).get("filter", {})
            if not isinstance(wanted, dict):
                raise TypeError
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return _json({"error": 'expected a JSON body {"filter": {...}}'}, 400)
        if not 1 <= limit <= SEARCH_MAX or (page is not None and offset is not None):
            return _json({"error": f"limit is 1..{SEARCH_MAX}; page or offset, not both"}, 400)
        start = offset if offset is not None else ((page or 1) - 1) * limit
        found = [r for r in items if all(r.get(k) == v for k, v in wanted.items())]
        return _json({"results": found[max(start, 0) : max(start, 0) + limit]})

    @api.get("/posts/{post_id}/comments")
    async def post_comments(post_id: int, request: Request) -> Response:
        if (fault := await gate(request)) is not None:
            return fault
        found = [c for c in data().resources["comments"] if c["postId"] == post_id]
        if not found or post_id % 25 == 0:
            return _json({"error": f"post {post_id} has no comments"}, 404)
        return _json(found)

    @api.get("/users/{user_id}/items")
    async def user_items(
        user_id: int,
        request: Request,
        updated_since: str = "",
        updated_before: str = "",
        _page: int = 1,
        _limit: int = 10,
    ) -> Response:
        if (fault := await gate(request)) is not None:
            return fault
        mine = sorted(
            (
                i
                for i in data().resources["items"]
                if (i["id"] - 1) % USERS + 1 == user_id
                and i["updated_at"] >= updated_since
                and (not updated_before or _instant(i["updated_at"]) < _instant(updated_before))
            ),
            key=lambda i: (i["updated_at"], i["id"]),
        )
        return _json(mine[(_page - 1) * _limit : _page * _limit])

    @api.get("/windowed/events")
    async def windowed(
        request: Request, since: str = "", until: str = "", _page: int = 1, _limit: int = 10
    ) -> Response:
        if (fault := await gate(request)) is not None:
            return fault
        try:
            start, end = _instant(since), _instant(until)
        except ValueError:
            return _json({"error": "since and until are required ISO-8601 instants"}, 400)
        if not start < end <= start + MAX_WINDOW:
            return _json({"error": "until must be after since, at most 31 days later"}, 400)
        if not all_events:
            all_events.extend(events(data().scale))
        chosen = [e for e in all_events if start <= _instant(e["occurred_at"]) < end]
        return _json(chosen[(_page - 1) * _limit : _page * _limit])

    @api.get("/archive/{resource}")
    async def archive(resource: str, request: Request) -> Response:
        if (fault := await gate(request)) is not None:
            return fault
        return _json({"error": f"no archived {resource}"}, 404)

    @api.get("/quota/{resource}")
    async def quota(resource: str, request: Request) -> Response:
        if (fault := await gate(request)) is not None:
            return fault
        if request.query_params.get("as") == "503":
            return _json({"error": "quota exceeded"}, 503, {"Retry-After": "1"})
        return _json({"error": "quota exceeded", "results": []})  # a 200 that is an error

    return api
