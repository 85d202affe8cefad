"""The fake third-party API over the wire: json-server conventions, variants, fault knobs."""

from __future__ import annotations

import json
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


@pytest.fixture(autouse=True)
def no_faults(api: httpx.Client) -> Iterator[None]:
    yield
    api.put("/__admin/faults", json={})


def test_json_server_page_conventions(api: httpx.Client) -> None:
    page = api.get("/posts", params={"_page": 3, "_limit": 7})
    assert [p["id"] for p in page.json()] == list(range(15, 22))
    assert page.headers["X-Total-Count"] == "100"
    links = page.headers["Link"]
    assert 'rel="first"' in links
    assert '_page=2&_limit=7>; rel="prev"' in links
    assert '_page=4&_limit=7>; rel="next"' in links
    assert '_page=15&_limit=7>; rel="last"' in links
    last = api.get("/posts", params={"_page": 15, "_limit": 7})
    assert [p["id"] for p in last.json()] == [99, 100]
    assert 'rel="next"' not in last.headers["Link"]
    assert len(api.get("/comments").json()) == 500
    assert [p["id"] for p in api.get("/todos", params={"_start": 10, "_end": 13}).json()] == [
        11,
        12,
        13,
    ]
    assert [p["id"] for p in api.get("/todos", params={"_start": 10, "_limit": 2}).json()] == [
        11,
        12,
    ]
    assert api.get("/nothing").status_code == 404


def test_data_is_deterministic_and_shaped_like_jsonplaceholder(api: httpx.Client) -> None:
    post = api.get("/posts", params={"_start": 0, "_end": 1}).json()[0]
    assert set(post) == {"userId", "id", "title", "body"}
    assert api.get("/posts", params={"_start": 0, "_end": 1}).json()[0] == post
    assert len(api.get("/photos", params={"_page": 1, "_limit": 5000}).json()) == 5000


def test_cursor_variant_walks_every_record_once(api: httpx.Client) -> None:
    seen, cursor = [], None
    while True:
        body = api.get(
            "/cursor/albums", params={"limit": 30, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [a["id"] for a in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(1, 101))


def test_incremental_variant_shows_new_and_changed_items(api: httpx.Client) -> None:
    before = api.get("/changes/items").json()
    newest = max(i["updated_at"] for i in before)
    advanced = api.post("/__admin/advance", params={"changed": 3, "added": 4}).json()
    changed = api.get("/changes/items", params={"updated_since": newest}).json()
    fresh = [i for i in changed if i["updated_at"] > newest]
    assert len(fresh) == 7  # 3 changed + 4 new, all stamped in the new generation
    assert advanced["items"] == len(before) + 4
    assert changed == sorted(changed, key=lambda i: (i["updated_at"], i["id"]))


def test_fault_knobs(api: httpx.Client) -> None:
    api.put("/__admin/faults", json={"rate_limit_rps": 2, "retry_after": "3"})
    statuses = [api.get("/users").status_code for _ in range(5)]
    assert 429 in statuses
    limited = next(r for r in (api.get("/users") for _ in range(5)) if r.status_code == 429)
    assert limited.headers["Retry-After"] == "3"
    api.put("/__admin/faults", json={"error_rate": 1.0})
    assert api.get("/users").status_code == 503
    api.put("/__admin/faults", json={"truncate_rate": 1.0})
    truncated = api.get("/users")
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError, match=r"Unterminated|Expecting"):
        json.loads(truncated.content)
    stats = api.get("/__admin/stats").json()
    assert {"429", "503", "truncated"} <= set(stats["injected"])


def test_limit_next_counts_only_the_requests_under_limit_path(api: httpx.Client) -> None:
    """`limit_next` with `limit_path`: the next N requests under that path get 429, whatever
    reaches the other paths first (a page request still on its way from an earlier run)."""
    api.put("/__admin/faults", json={"limit_next": 1, "limit_path": "/posts", "retry_after": "2"})
    assert [api.get("/users").status_code for _ in range(3)] == [200, 200, 200]
    limited = api.get("/posts")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    assert api.get("/posts").status_code == 200  # one, then served
    api.put("/__admin/faults", json={"limit_next": 1})  # the default path: any request
    assert api.get("/users").status_code == 429
