"""The fake API's richer vendors over the wire, error cases included: OAuth2 refuses a wrong
client and a dead token, the windowed resource refuses a missing or too long range, GraphQL
refuses a malformed query."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import fake_vendor_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with (
        fake_vendor_api(tmp_path_factory.mktemp("fakeapi")) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        yield client


def token(api: httpx.Client, secret: str = "fake-oauth-secret") -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": "tributary", "client_secret": secret}
    return api.post("/oauth/token", data=form)


def test_oauth2_client_credentials(api: httpx.Client) -> None:
    assert api.get("/oauth/posts").status_code == 401
    assert token(api, "wrong").json() == {"error": "invalid_client"}
    bad_grant = api.post("/oauth/token", data={"grant_type": "password"})
    assert (bad_grant.status_code, bad_grant.json()) == (400, {"error": "unsupported_grant_type"})
    issued = token(api).json()
    assert issued["token_type"] == "Bearer"
    assert issued["expires_in"] == 3600
    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    page = api.get("/oauth/posts", params={"limit": 60}, headers=bearer)
    assert len(page.json()) == 60
    rest = api.get(
        "/oauth/posts", params={"limit": 60, "after": page.headers["X-Next-Cursor"]}, headers=bearer
    )
    assert [p["id"] for p in rest.json()] == list(range(61, 101))
    assert "X-Next-Cursor" not in rest.headers
    api.put("/__admin/oauth", json={"revoke": True})
    assert api.get("/oauth/posts", headers=bearer).status_code == 401
    api.put("/__admin/oauth", json={"expires_in": 2})
    short = {"Authorization": f"Bearer {token(api).json()['access_token']}"}
    assert api.get("/oauth/posts", headers=short).status_code == 200
    time.sleep(2.2)
    assert api.get("/oauth/posts", headers=short).status_code == 401  # expired
    api.put("/__admin/oauth", json={})


def test_json_link_and_header_cursor(api: httpx.Client) -> None:
    first = api.get("/jsonlink/comments", params={"per_page": 200}).json()
    assert (len(first["results"]), first["next"]) == (200, "/jsonlink/comments?page=2&per_page=200")
    last = api.get("/jsonlink/comments", params={"page": 3, "per_page": 200}).json()
    assert (len(last["results"]), last["next"]) == (100, None)
    assert api.get("/jsonlink/nope").status_code == 404


def test_windowed_events_need_a_bounded_range(api: httpx.Client) -> None:
    assert api.get("/windowed/events").status_code == 400
    year = {"since": "2025-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    assert api.get("/windowed/events", params=year).status_code == 400  # over 31 days
    backwards = {"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}
    assert api.get("/windowed/events", params=backwards).status_code == 400
    day = {"since": "2025-01-01T07:00:00Z", "until": "2025-01-02T04:00:00Z", "_limit": 50}
    found = api.get("/windowed/events", params=day).json()
    # since inclusive, until exclusive: 07:00, 14:00, 21:00 (04:00 the next day is out)
    assert [e["occurred_at"] for e in found] == [
        "2025-01-01T07:00:00Z",
        "2025-01-01T14:00:00Z",
        "2025-01-01T21:00:00Z",
    ]


ITEMS = (
    "query($first: Int, $after: String) { items(first: $first, after: $after) "
    "{ nodes { id updated_at } pageInfo { hasNextPage endCursor } } }"
)


def test_graphql_relay_paging_and_errors(api: httpx.Client) -> None:
    assert api.post("/graphql", content=b"{").status_code == 400  # not a GraphQL request
    query = {"query": ITEMS, "variables": {"first": 30}}
    page = api.post("/graphql", json=query).json()["data"]["items"]
    assert len(page["nodes"]) == 30
    assert page["pageInfo"]["hasNextPage"] is True
    after = {**query, "variables": {"first": 30, "after": page["pageInfo"]["endCursor"]}}
    last = api.post("/graphql", json=after).json()["data"]["items"]
    assert (len(last["nodes"]), last["pageInfo"]["hasNextPage"]) == (20, False)
    assert last["pageInfo"]["endCursor"] is not None  # relay: a cursor even on the last page


def test_graphql_refuses_a_query_string_as_paging_it_would_ignore(api: httpx.Client) -> None:
    """A GraphQL POST carries everything in its body: `?limit=` pages nothing, so it is 400."""
    refused = api.post("/graphql?limit=100", json={"query": ITEMS, "variables": {"first": 3}})
    assert refused.status_code == 400
    assert "unexpected query parameters ['limit']" in refused.text
    assert api.post("/graphql", json={"query": ITEMS, "variables": {"first": 3}}).is_success
    authed = api.post("/graphql?api_key=k", json={"query": ITEMS, "variables": {"first": 3}})
    assert authed.is_success  # query-string auth is no paging: accepted


def test_search_pages_a_filter_body_by_query_with_a_small_default_page(api: httpx.Client) -> None:
    """A REST search POST: the body filters, `page`/`offset` and `limit` page; without a
    `limit` a page is 10 records, so a client must send its page size."""
    mine = {"filter": {"userId": 1}}
    assert len(api.post("/search/posts", json={}).json()["results"]) == 10
    first = api.post("/search/posts?page=1&limit=4", json=mine).json()["results"]
    assert [p["userId"] for p in first] == [1] * 4
    by_offset = api.post("/search/posts?offset=4&limit=100", json=mine).json()["results"]
    everything = api.post("/search/posts?limit=100", json=mine).json()["results"]
    assert first + by_offset == everything
    assert api.post("/search/posts?limit=101", json={}).status_code == 400
    assert api.post("/search/posts", content=b"[1]").status_code == 400
    assert api.post("/search/nothing", json={}).status_code == 404


def test_graphql_answers_only_what_was_selected(api: httpx.Client) -> None:
    answer = api.post("/graphql", json={"query": "{ items(first: 2) { nodes { id } } }"})
    assert answer.json() == {"data": {"items": {"nodes": [{"id": 1}, {"id": 2}]}}}


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("{ items }", "must have a selection of subfields"),
        ("{ users { id } }", "Cannot query field 'users'"),
        ("query($since: String) { items { nodes { id } } }", "Variable '$since' is never used"),
        ("{ items { nodes { id color } } }", "Cannot query field 'color'"),
    ],
    ids=["no_selection_set", "unknown_root_field", "unused_variable", "unknown_field"],
)
def test_graphql_errors_are_200_with_errors_as_real_servers_answer(
    api: httpx.Client, query: str, says: str
) -> None:
    answer = api.post("/graphql", json={"query": query, "variables": {"since": "x"}})
    assert answer.status_code == 200
    body = answer.json()
    assert "data" not in body
    assert says in body["errors"][0]["message"]


def test_child_resources(api: httpx.Client) -> None:
    assert [c["postId"] for c in api.get("/posts/3/comments").json()] == [3] * 5
    assert api.get("/posts/25/comments").status_code == 404  # every 25th post has none
    assert api.get("/posts/1000/comments").status_code == 404
    mine = api.get("/users/3/items", params={"_limit": 100}).json()
    assert {i["id"] for i in mine} == {3, 13, 23, 33, 43}
    assert api.get("/archive/posts").status_code == 404
