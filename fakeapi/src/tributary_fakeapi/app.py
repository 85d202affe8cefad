"""The fake API: json-server 0.17 conventions plus a cursor variant, an incremental variant,
and fault knobs (rate limit with Retry-After, random 5xx, slow responses, truncated bodies).

- `GET /{resource}` — whole list, or `_page`/`_limit` (Link + X-Total-Count), or `_start`/`_end`
  / `_start`/`_limit` (offset).
- `GET /cursor/{resource}?limit=N&cursor=C` — `{"data": [...], "next_cursor": C | null}`.
- `GET /changes/items?updated_since=T&_page=&_limit=` — items with `updated_at >= T`, oldest
  first (then by id).
- `GET /changes/mixed?updated_since=T&seq_since=N&big_since=N&rev_since=D&_page=&_limit=` — the
  same items with `updated_at` in mixed ISO-8601 spellings (offsets, fractions), an integer
  `seq` past 2^53, `big` past 2^64 and a decimal `rev` with more digits than a float holds;
  filtered by instant and by integer, oldest first.
- `GET /signed/{resource}?_page=&_limit=` — json-server paging whose next links carry a
  `token` (as some vendors sign them); a page past the first without the right token is 403.
- `variants.py`: OAuth2, json_link, header cursor, GraphQL POST, parent/child, date windows.
- `POST /__admin/advance` — new and changed items; `PUT /__admin/faults` — fault knobs;
  `GET /__admin/stats` — request counts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from tributary_fakeapi import variants, vendor
from tributary_fakeapi.data import Dataset, mixed_item
from tributary_fakeapi.shop import shop_router


class Faults(BaseModel):
    """Fault knobs; all off by default."""

    rate_limit_rps: float = Field(default=0.0, ge=0)  # token bucket; 429 + Retry-After beyond
    retry_after: str = "1"  # seconds, or an HTTP-date
    limit_next: int = Field(default=0, ge=0)  # the next N requests: 429, bucket or not
    # Only requests whose path starts with it count for `limit_next`: a test that means the
    # token endpoint is not beaten to it by a page request still on its way from an earlier run.
    limit_path: str = "/"
    error_rate: float = Field(default=0.0, ge=0, le=1)  # share of 503 answers
    slow_ms: int = Field(default=0, ge=0)
    truncate_rate: float = Field(default=0.0, ge=0, le=1)  # share of bodies cut in half
    fail_from_page: int = Field(default=0, ge=0)  # 503 for every _page >= this (0: off)
    seed: int = 11


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _exact_json(body: Any, headers: dict[str, str]) -> Response:
    """JSON with integers of any size and `Decimal`s as exact number literals (orjson refuses
    integers past 64 bits and has no decimals)."""
    marker = "\u0000num:"

    def number(value: Any) -> str:
        if isinstance(value, Decimal):
            return f"{marker}{value}"
        raise TypeError(type(value).__name__)

    text = json.dumps(body, default=number)
    text = re.sub(r'"\\u0000num:([^"]*)"', r"\1", text)
    return Response(text.encode(), 200, headers, media_type="application/json")


def page_token(page: int) -> str:
    """The token a signed next link carries for `page` (what a test must never see logged)."""
    return "tok-" + hashlib.sha256(f"fakeapi-page-{page}".encode()).hexdigest()[:24]


def create_app(scale: int = 1, api_key: str | None = None, latency_ms: float = 0.0) -> FastAPI:
    """The app, with its own deterministic dataset (`latency_ms`: see tributary_fakeapi.vendor)."""
    app = FastAPI(title="Fake third-party API")
    vendor.install(app, latency_ms)
    app.include_router(shop_router(scale))  # before the catch-all /{resource}
    state: dict[str, Any] = {
        "data": Dataset(scale),
        "faults": Faults(),
        "tokens": 0.0,
        "at": 0.0,
        "requests": 0,
        "injected": {},
        "limited": 0,
    }
    state["rng"] = random.Random(state["faults"].seed)

    async def faulty(request: Request, check_key: bool = True) -> Response | None:
        """A fault answer for this request, or None to serve it normally."""
        faults: Faults = state["faults"]
        state["requests"] += 1
        if check_key and api_key is not None and request.headers.get("x-api-key") != api_key:
            return _json({"error": "missing or wrong X-API-Key"}, 401)
        loop = asyncio.get_running_loop()
        if state["limited"] < faults.limit_next and request.url.path.startswith(faults.limit_path):
            state["limited"] += 1
            state["injected"]["429"] = state["injected"].get("429", 0) + 1
            return _json({"error": "rate limited"}, 429, {"Retry-After": faults.retry_after})
        if faults.rate_limit_rps > 0:
            now = loop.time()
            tokens = min(
                faults.rate_limit_rps, state["tokens"] + (now - state["at"]) * faults.rate_limit_rps
            )
            state["at"] = now
            if tokens < 1:
                state["tokens"] = tokens
                state["injected"]["429"] = state["injected"].get("429", 0) + 1
                return _json({"error": "rate limited"}, 429, {"Retry-After": faults.retry_after})
            state["tokens"] = tokens - 1
        if faults.slow_ms:
            await asyncio.sleep(faults.slow_ms / 1000)
        page = request.query_params.get("_page", "")
        if faults.fail_from_page and page.isdigit() and int(page) >= faults.fail_from_page:
            state["injected"]["503"] = state["injected"].get("503", 0) + 1
            return _json({"error": "upstream unavailable"}, 503)
        if faults.error_rate and state["rng"].random() < faults.error_rate:
            state["injected"]["503"] = state["injected"].get("503", 0) + 1
            return _json({"error": "upstream unavailable"}, 503)
        return None

    def truncated(response: Response) -> Response:
        faults: Faults = state["faults"]
        if faults.truncate_rate and state["rng"].random() < faults.truncate_rate:
            state["injected"]["truncated"] = state["injected"].get("truncated", 0) + 1
            body = bytes(response.body)
            return Response(
                body[: len(body) // 2],
                response.status_code,
                {k: v for k, v in response.headers.items() if k.lower() != "content-length"},
                media_type="application/json",
            )
        return response

    async def resource_rows(request: Request, name: str) -> list[dict[str, Any]] | Response:
        """The rows of `name`, or the answer to send instead (an injected fault, or 404)."""
        if (fault := await faulty(request)) is not None:
            return fault
        data: Dataset = state["data"]
        if name not in data.resources:
            return _json({"error": f"no resource {name!r}"}, 404)
        return data.resources[name]

    def page_response(
        request: Request, items: list[dict[str, Any]], signed: bool = False, exact: bool = False
    ) -> Response:
        """json-server slicing: _page/_limit (Link, X-Total-Count), _start/_end/_limit; with
        `signed`, links carry the page's token."""
        q = request.query_params
        total = len(items)
        headers = {
            "X-Total-Count": str(total),
            "Access-Control-Expose-Headers": "X-Total-Count, Link",
        }
        if "_page" in q:
            page, limit = max(1, int(q["_page"])), int(q.get("_limit", "10"))
            last = max(1, -(-total // limit))
            base = str(request.url.remove_query_params(["_page", "_limit", "token"]))
            sep = "&" if "?" in base else "?"

            def link(p: int, rel: str) -> str:
                token = f"&token={page_token(p)}" if signed else ""
                return f'<{base}{sep}_page={p}&_limit={limit}{token}>; rel="{rel}"'

            links = [link(1, "first")]
            if page > 1:
                links.append(link(page - 1, "prev"))
            if page < last:
                links.append(link(page + 1, "next"))
            links.append(link(last, "last"))
            headers["Link"] = ", ".join(links)
            items = items[(page - 1) * limit : page * limit]
        elif "_start" in q:
            start = int(q["_start"])
            end = int(q["_end"]) if "_end" in q else start + int(q.get("_limit", "10"))
            items = items[start:end]
        return _exact_json(items, headers) if exact else _json(items, headers=headers)

    @app.get("/signed/{resource}")
    async def signed(resource: str, request: Request) -> Response:
        items = await resource_rows(request, resource)
        if isinstance(items, Response):
            return items
        page = int(request.query_params.get("_page", "1"))
        if page > 1 and request.query_params.get("token") != page_token(page):
            return _json({"error": "missing or wrong page token"}, 403)
        return truncated(page_response(request, items, signed=True))

    @app.get("/__admin/stats")
    async def stats() -> Response:
        return _json(
            {
                "requests": state["requests"],
                "injected": state["injected"],
                "generation": state["data"].generation,
            }
        )

    @app.put("/__admin/faults")
    async def set_faults(faults: Faults) -> Response:
        state["faults"] = faults
        state["rng"] = random.Random(faults.seed)
        state["limited"] = 0
        state["tokens"], state["at"] = faults.rate_limit_rps, asyncio.get_running_loop().time()
        return _json(faults.model_dump())

    @app.post("/__admin/advance")
    async def advance(changed: int = 5, added: int = 10) -> Response:
        state["data"].advance(changed, added)
        return _json(
            {"generation": state["data"].generation, "items": len(state["data"].resources["items"])}
        )

    @app.get("/cursor/{resource}")
    async def by_cursor(
        resource: str, request: Request, limit: int = 10, cursor: str | None = None
    ) -> Response:
        items = await resource_rows(request, resource)
        if isinstance(items, Response):
            return items
        start = int(base64.urlsafe_b64decode(cursor.encode())) if cursor else 0
        chunk = items[start : start + limit]
        end = start + len(chunk)
        next_cursor = (
            base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
        )
        return truncated(_json({"data": chunk, "next_cursor": next_cursor}))

    @app.get("/changes/items")
    async def changes(request: Request, updated_since: str = "") -> Response:
        rows = await resource_rows(request, "items")
        if isinstance(rows, Response):
            return rows
        items = sorted(
            (i for i in rows if i["updated_at"] >= updated_since),
            key=lambda i: (i["updated_at"], i["id"]),
        )
        return truncated(page_response(request, items))

    @app.get("/changes/mixed")
    async def mixed(
        request: Request,
        updated_since: str = "",
        seq_since: int = 0,
        big_since: int = 0,
        rev_since: str = "0",
    ) -> Response:
        rows = await resource_rows(request, "items")
        if isinstance(rows, Response):
            return rows
        since = datetime.fromisoformat(updated_since) if updated_since else None
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        served = sorted((mixed_item(i) for i in rows), key=lambda p: (p[0], p[1]["id"]))
        items = [
            item
            for at, item in served
            if (since is None or at >= since)
            and item["seq"] >= seq_since
            and item["big"] >= big_since
            and item["rev"] >= Decimal(rev_since)
        ]
        return truncated(page_response(request, items, exact=True))

    @app.get("/{resource}")
    async def listing(resource: str, request: Request) -> Response:
        items = await resource_rows(request, resource)
        if isinstance(items, Response):
            return items
        return truncated(page_response(request, items))

    app.include_router(variants.router(state, faulty))  # richer vendors (variants.py)
    return app
