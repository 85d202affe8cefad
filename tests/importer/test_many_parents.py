"""A child of thousands of parents: its per-parent state goes to the state blob (the item stays
small), a second run is incremental per parent, and parents no longer listed are dropped. A
vendor in-process (httpx.MockTransport) for scale; the state through `MemoryStateStore`, which
applies the codec and DynamoDB's item limit as the table does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import orjson

from tests.importer.test_import import importer
from tests.importer.test_segmented import sources
from tributary.testing import MemoryRawWriter
from tributary_importer.clients import client_for
from tributary_importer.source import DeclaredSource
from tributary_importer.state import MAX_ITEM_BYTES, MemoryStateStore, item_key

PARENTS = 1200
CHILDREN = 8  # per parent, all within the look-back: each parent keeps 8 look-back ids
START = datetime(2026, 1, 1, tzinfo=UTC)


class Vendor:
    """`/accounts?page=` lists parents (500 a page, `gone` left out); `/accounts/{id}/events?
    since=` its events, `updated_at >= since`."""

    def __init__(self) -> None:
        self.gone: set[int] = set()
        self.extra: dict[int, int] = {}  # parent -> events added since the first run

    def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if len(parts) == 1:
            page = int(request.url.params.get("page", "1"))
            ids = [i for i in range(1, PARENTS + 1) if i not in self.gone]
            return httpx.Response(200, json=[{"id": i} for i in ids[(page - 1) * 500 : page * 500]])
        parent, since = int(parts[1]), request.url.params["since"]
        events = [
            {"id": f"{parent}-{n}", "updated_at": (START + timedelta(seconds=n)).isoformat()}
            for n in range(CHILDREN + self.extra.get(parent, 0))
        ]
        return httpx.Response(
            200, content=orjson.dumps([e for e in events if e["updated_at"] >= since])
        )


def declared(url: str) -> dict[str, DeclaredSource]:
    return sources(
        url,
        accounts={
            "path": "/accounts",
            "dataset": "accounts",
            "pagination": {"kind": "page_number", "size_param": "n", "page_size": 500},
        },
        account_events={
            "path": "/accounts/{aid}/events",
            "dataset": "events",
            "rate_limit_rps": 100_000,
            "resolve": {"aid": {"resource": "accounts", "field": "id"}},
            "incremental": {
                "field": "updated_at",
                "param": "since",
                "initial": "2025-12-01T00:00:00Z",
                "lag_s": 3600,
            },
        },
    )


async def test_thousands_of_parents_fit_and_unlisted_ones_are_dropped() -> None:
    vendor = Vendor()
    url = "https://vendor.test"
    writer, store = MemoryRawWriter(), MemoryStateStore()
    async with httpx.AsyncClient(base_url=url, transport=httpx.MockTransport(vendor)) as http:
        first = await importer(writer, store).run_once(
            client_for("account_events", declared(url), http)
        )
        assert first.records == PARENTS * CHILDREN
        state = await store.get("account_events")
        assert len(state.parents) == PARENTS
        assert len(store.items[item_key("account_events")][1]) < MAX_ITEM_BYTES // 10
        vendor.gone = {1, 2}
        vendor.extra = {7: 1}
        second = await importer(writer, store).run_once(
            client_for("account_events", declared(url), http)
        )
    assert second.records == 1  # incremental per parent: only parent 7's new event
    state = await store.get("account_events")
    assert len(state.parents) == PARENTS - 2
    assert "1" not in state.parents
    assert "2" not in state.parents
