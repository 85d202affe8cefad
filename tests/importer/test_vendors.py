"""The richer vendors over the wire: json_link, header cursor, custom and body-cursor paging,
POST bodies, OAuth2 client credentials and response actions, against the fake vendor API."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.importer.test_import import fake_url, http, importer, landed, primary_keys, spec
from tests.importer.test_segmented import comments, sources
from tributary.errors import ConfigError, PermanentError, RetriesExhaustedError
from tributary.testing import MemoryRawWriter
from tributary_importer.clients import client_for
from tributary_importer.fetch import SourceClient
from tributary_importer.source import PaginationSpec, SourceSpec, load_sources
from tributary_importer.state import MemoryStateStore

__all__ = ["fake_url", "http"]  # the module-scoped fixtures

REPO = Path(__file__).resolve().parents[2]
OAUTH_SECRET = "fake-oauth-secret"  # the fake's default client secret
POSTS = Counter(str(i) for i in range(1, 101))


async def stats(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    found: dict[str, Any] = (await http.get(f"{url}/__admin/variants")).json()
    return found


@pytest.mark.parametrize(
    ("path", "records_path", "pagination", "pages"),
    [
        ("/jsonlink/posts", "results", {"kind": "json_link", "next_url_path": "next"}, 4),
        (
            "/hcursor/posts",
            None,
            {"kind": "header_cursor", "cursor_key": "X-Next-Cursor", "cursor_param": "after"},
            4,
        ),
    ],
    ids=["json_link", "header_cursor"],
)
async def test_next_url_in_the_body_and_cursor_in_a_header(
    fake_url: str,
    http: httpx.AsyncClient,
    path: str,
    records_path: str | None,
    pagination: dict[str, Any],
    pages: int,
) -> None:
    size = "per_page" if pagination["kind"] == "json_link" else "limit"
    source = spec(
        fake_url,
        path,
        records_path=records_path,
        pagination={**pagination, "size_param": size, "page_size": 30},
    )
    writer = MemoryRawWriter()
    result = await importer(writer, MemoryStateStore()).run_once(SourceClient("p", source, http))
    assert primary_keys(landed(writer)) == POSTS
    assert result.pages == pages


def graphql(url: str, **kw: Any) -> dict[str, Any]:
    return {
        "base_url": url,
        "path": "/graphql",
        "dataset": "items",
        "rate_limit_rps": 500,
        "method": "POST",
        "json": {
            "query": (
                "query($since: String, $after: String, $first: Int) "
                "{ items(since: $since, after: $after, first: $first) "
                "{ nodes { id updated_at } pageInfo { hasNextPage endCursor } } }"
            ),
            "variables": {"since": "{incremental.start_value}", "first": 7},
        },
        "records_path": "data.items.nodes",
        "incremental": {"field": "updated_at", "initial": "2026-01-01T00:00:00Z"},
        **kw,
    }


@pytest.mark.parametrize(
    ("pagination", "extra_requests"),
    [
        (
            {
                "kind": "cursor",
                "next_cursor_path": "data.items.pageInfo.endCursor",
                "cursor_body_path": "variables.after",
            },
            1,  # it cannot see hasNextPage: one more request, an empty page, ends it
        ),
        ({"kind": "custom", "hook": "tributary_importer.hooks:relay_next"}, 0),
    ],
    ids=["cursor_in_the_body", "custom_hook"],
)
async def test_post_bodies_carry_the_cursor_and_the_page_token(
    fake_url: str, http: httpx.AsyncClient, pagination: dict[str, Any], extra_requests: int
) -> None:
    source = SourceSpec.model_validate(graphql(fake_url, pagination=pagination))
    writer, store = MemoryRawWriter(), MemoryStateStore()
    run = importer(writer, store)
    before = (await stats(http, fake_url))["paths"].get("/graphql", 0)
    first = await run.run_once(SourceClient("gql", source, http))
    served = (await http.get(f"{fake_url}/changes/items")).json()
    assert first.records == len(served)
    requests = (await stats(http, fake_url))["paths"]["/graphql"] - before
    assert requests == -(-len(served) // 7) + extra_requests
    assert first.cursor == max(r["updated_at"] for r in served)
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 2, "added": 3})
    second = await run.run_once(SourceClient("gql", source, http))
    assert second.records == 5  # the cursor went in the body: only what changed
    assert max(landed(writer).values()) == 1


def test_a_hook_that_cannot_be_loaded_is_a_config_error(fake_url: str) -> None:
    source = SourceSpec.model_validate(
        graphql(fake_url, pagination={"kind": "custom", "hook": "tributary_importer.hooks:nope"})
    )
    with pytest.raises(ConfigError, match="hooks:nope' cannot be loaded"):
        SourceClient("gql", source, httpx.AsyncClient())


def oauth(url: str, secret: str = OAUTH_SECRET, **kw: Any) -> Any:
    return spec(
        url,
        "/oauth/posts",
        auth={
            "kind": "oauth2_client_credentials",
            "token_url": f"{url}/oauth/token",
            "client_id": "tributary",
            "secret": secret,
            **kw,
        },
        pagination={"kind": "header_cursor", "cursor_param": "after", "page_size": 10},
    )


async def test_oauth2_token_cached_refreshed_before_expiry_and_on_401(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    writer = MemoryRawWriter()
    client = SourceClient("o", oauth(fake_url), http)
    await importer(writer, MemoryStateStore()).run_once(client)
    assert primary_keys(landed(writer)) == POSTS
    assert client.oauth is not None
    assert client.oauth.fetched == 1  # 10 pages, one token
    # The vendor revokes every token: the next request's 401 fetches a new one, once.
    await http.put(f"{fake_url}/__admin/oauth", json={"revoke": True})
    again = await importer(MemoryRawWriter(), MemoryStateStore()).run_once(client)
    assert (again.records, client.oauth.fetched) == (100, 2)
    # Tokens that live 61 s with a 60 s margin are renewed before each use once 1 s passed.
    await http.put(f"{fake_url}/__admin/oauth", json={"expires_in": 61})
    short = SourceClient("o", oauth(fake_url), http)
    assert short.oauth is not None
    ticks = iter(float(i) for i in range(1000))
    short.oauth._clock = lambda: next(ticks)
    await importer(MemoryRawWriter(), MemoryStateStore()).run_once(short)
    assert short.oauth.fetched > 5
    await http.put(f"{fake_url}/__admin/oauth", json={})


async def test_oauth2_a_token_that_keeps_failing_is_one_refresh_then_an_error(
    fake_url: str, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 right after a fresh token is not retried forever, and shows neither secret."""
    await http.put(f"{fake_url}/__admin/oauth", json={"refuse": True})
    client = SourceClient("o", oauth(fake_url), http)
    assert client.oauth is not None
    writer = MemoryRawWriter()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PermanentError, match="HTTP 401") as failure:
        await importer(writer, MemoryStateStore()).run_once(client)
    assert client.oauth.fetched == 2  # the first token, and one refresh
    assert not writer.objects
    token = client.oauth._token
    assert token is not None
    for text in (str(failure.value), caplog.text):
        assert token not in text
        assert OAUTH_SECRET not in text
    await http.put(f"{fake_url}/__admin/oauth", json={})


async def test_oauth2_a_wrong_client_secret_fails_without_showing_it(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    client = SourceClient("o", oauth(fake_url, secret="wrong-secret-value"), http)
    with pytest.raises(PermanentError) as failure:
        await importer(MemoryRawWriter(), MemoryStateStore()).run_once(client)
    assert "HTTP 401 without an access_token" in str(failure.value)
    assert "wrong-secret-value" not in str(failure.value)


async def test_response_actions_turn_a_404_into_an_empty_resource(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    archive = spec(fake_url, "/archive/posts")
    with pytest.raises(PermanentError, match="HTTP 404"):
        await importer(MemoryRawWriter(), MemoryStateStore()).run_once(
            SourceClient("a", archive, http)
        )
    ignoring = SourceSpec.model_validate(
        {
            **archive.model_dump(by_alias=True),
            "response_actions": [{"status_code": 404, "action": "ignore"}],
        }
    )
    store = MemoryStateStore()
    client = SourceClient("a", ignoring, http)
    result = await importer(MemoryRawWriter(), store).run_once(client)
    assert (result.pages, result.records, client.ignored) == (1, 0, 1)
    assert (await store.get("a")).run is None  # the run ended: not a failure
    narrow = SourceSpec.model_validate(
        {
            **archive.model_dump(by_alias=True),
            "response_actions": [{"status_code": 404, "content": "other", "action": "ignore"}],
        }
    )
    with pytest.raises(PermanentError, match="HTTP 404"):  # the body does not match
        await importer(MemoryRawWriter(), MemoryStateStore()).run_once(
            SourceClient("a", narrow, http)
        )


async def test_a_response_action_may_declare_a_status_transient(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    retrying = SourceSpec.model_validate(
        {
            **spec(fake_url, "/archive/posts", max_attempts=2).model_dump(by_alias=True),
            "response_actions": [{"status_code": 404, "action": "retry"}],
        }
    )
    with pytest.raises(RetriesExhaustedError, match="retry declared"):
        await importer(MemoryRawWriter(), MemoryStateStore()).run_once(
            SourceClient("a", retrying, http)
        )


@pytest.mark.parametrize(
    ("params", "status"), [({"as": "503"}, 503), ({}, 200)], ids=["503-declared", "200-content"]
)
async def test_a_fail_action_fails_the_run_at_once_and_moves_no_cursor(
    fake_url: str, http: httpx.AsyncClient, params: dict[str, str], status: int
) -> None:
    failing = SourceSpec.model_validate(
        {
            **spec(fake_url, "/quota/posts", records_path="results", params=params).model_dump(
                by_alias=True
            ),
            "response_actions": [
                {"status_code": status, "content": "quota exceeded", "action": "fail"}
            ],
        }
    )
    before = (await stats(http, fake_url))["paths"].get("/quota/posts", 0)
    store, writer = MemoryStateStore(), MemoryRawWriter()
    with pytest.raises(PermanentError, match=f"HTTP {status} .*fail declared.*quota exceeded"):
        await importer(writer, store).run_once(SourceClient("q", failing, http))
    assert (await stats(http, fake_url))["paths"]["/quota/posts"] - before == 1  # no retry
    assert not landed(writer)
    assert (await store.get("q")).cursor is None


async def test_the_shipped_graphql_source_imports_every_item_in_relay_pages(
    fake_url: str, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKEAPI_URL", fake_url)
    shipped = load_sources(REPO / "config" / "sources.yaml")["items_graphql"]
    shipped_spec = shipped.ready().model_copy(update={"rate_limit_rps": 500})
    served = (await http.get(f"{fake_url}/changes/items")).json()
    writer = MemoryRawWriter()
    result = await importer(writer, MemoryStateStore()).run_once(
        SourceClient("items_graphql", shipped_spec, http)
    )
    assert primary_keys(landed(writer)) == Counter(str(i["id"]) for i in served)
    assert result.pages == -(-len(served) // 20)
    assert result.cursor == max(i["updated_at"] for i in served)


async def test_graphql_errors_in_a_200_fail_the_run_and_move_no_cursor(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    body = graphql(fake_url)["json"]
    unused = {**body, "query": "query($since: String) { items { nodes { id updated_at } } }"}
    source = SourceSpec.model_validate({**graphql(fake_url), "json": unused})
    store, writer = MemoryStateStore(), MemoryRawWriter()
    with pytest.raises(PermanentError, match=r"GraphQL errors .*never used"):
        await importer(writer, store).run_once(SourceClient("gql", source, http))
    assert not landed(writer)
    assert (await store.get("gql")).cursor is None


async def test_oauth2_one_token_for_pages_in_flight_and_for_a_child_and_its_parent(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    await http.put(f"{fake_url}/__admin/oauth", json={"revoke": True})
    paged = SourceSpec.model_validate(
        {
            **oauth(fake_url).model_dump(by_alias=True),
            "path": "/posts",
            "concurrency": 4,
            "pagination": {"kind": "page_number", "page_param": "_page", "size_param": "_limit"},
        }
    )
    paged_client = SourceClient("o", paged, http)
    result = await importer(MemoryRawWriter(), MemoryStateStore()).run_once(paged_client)
    assert result.records == 100
    assert (await stats(http, fake_url))["tokens_issued"] == 1  # 4 requests in flight at first
    await http.put(f"{fake_url}/__admin/oauth", json={"revoke": True})
    auth = paged.auth.model_dump()
    declared = sources(
        fake_url,
        posts={
            "path": "/oauth/posts",
            "dataset": "posts",
            "auth": auth,
            "pagination": {
                "kind": "header_cursor",
                "cursor_param": "after",
                "size_param": "limit",
                "page_size": 50,
            },
        },
        post_comments={**comments(fake_url)["post_comments"], "auth": auth},
    )
    child = client_for("post_comments", declared, http)
    await importer(MemoryRawWriter(), MemoryStateStore()).run_once(child)
    assert (await stats(http, fake_url))["tokens_issued"] == 1


def test_a_bound_placeholder_inside_a_string_is_refused_at_load(fake_url: str) -> None:
    body = graphql(fake_url)
    inline = {
        "query": 'query { items(since: "{incremental.start_value}") { nodes { id } } }',
        "variables": {"first": 7},
    }
    with pytest.raises(ValueError, match=r"json\.query: \{incremental\.start_value\}"):
        SourceSpec.model_validate({**body, "json": inline})


def broken_hook(request: Any, body: Any, headers: Any) -> Any:
    """A custom pagination hook with a bug."""
    return body["no such key"]


async def test_a_pagination_hook_that_raises_fails_only_its_source(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    hook = {"kind": "custom", "hook": "tests.importer.test_vendors:broken_hook"}
    source = SourceSpec.model_validate(graphql(fake_url, pagination=hook))
    store = MemoryStateStore()
    with pytest.raises(PermanentError, match="test_vendors:broken_hook' raised KeyError"):
        await importer(MemoryRawWriter(), store).run_once(SourceClient("gql", source, http))
    assert (await store.get("gql")).cursor is None


@pytest.mark.parametrize(
    "pagination",
    [
        {"kind": "page_number", "page_param": "page"},
        {"kind": "offset", "offset_param": "offset"},
    ],
    ids=["page_number", "offset"],
)
async def test_a_json_body_post_that_pages_by_query_sends_its_page_size(
    fake_url: str, http: httpx.AsyncClient, pagination: dict[str, Any]
) -> None:
    """A REST search POST (filter in the body, paged by `?page=`/`?offset=`) whose default page
    (10) is below `page_size`: the size goes in the query, or the first page reads as short and
    the run ends at 10 records. `size_param` is left at its default `limit`."""
    source = spec(
        fake_url,
        "/search/posts",
        method="POST",
        json={"filter": {}},
        records_path="results",
        pagination={**pagination, "page_size": 30},
    )
    writer = MemoryRawWriter()
    result = await importer(writer, MemoryStateStore()).run_once(SourceClient("s", source, http))
    assert primary_keys(landed(writer)) == POSTS
    assert result.pages == 4  # 30, 30, 30, 10


@pytest.mark.parametrize(
    "pagination",
    [
        {"kind": "cursor", "next_cursor_path": "n", "cursor_body_path": "variables.after"},
        {"kind": "custom", "hook": "tributary_importer.hooks:relay_next"},
    ],
    ids=["cursor_in_the_body", "custom_hook"],
)
def test_only_paging_in_a_json_body_leaves_the_page_size_out_of_the_query(
    pagination: dict[str, Any],
) -> None:
    """The GraphQL case: the position travels in the body, so does the size (no stray
    `?limit=`; the fake's /graphql refuses one, see the over-the-wire tests above); declared,
    `size_param` is sent; every other paging sends it, body or not."""
    implicit = PaginationSpec.model_validate(pagination)
    assert not implicit.size_in_query(has_body=True)
    assert implicit.size_in_query(has_body=False)  # a GET: the default `limit`, as before
    declared = PaginationSpec.model_validate({**pagination, "size_param": "per_page"})
    assert declared.size_in_query(has_body=True)
    for kind in ("page_number", "offset", "link_header", "json_link"):
        assert PaginationSpec.model_validate({"kind": kind}).size_in_query(has_body=True)
    header = {"kind": "header_cursor"}
    assert PaginationSpec.model_validate(header).size_in_query(has_body=True)
    plain_cursor = {"kind": "cursor", "next_cursor_path": "n"}  # the cursor in the query
    assert PaginationSpec.model_validate(plain_cursor).size_in_query(has_body=True)
    assert not PaginationSpec().size_in_query(has_body=False)  # no paging: no size
