"""Runs in checkpointed segments over the wire: date windows (the end sent to the vendor, a
year sliced into steps) and parent/child resources (a path per parent record, incremental per
parent); crashes injected at every step resume at the window or parent they stopped at."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

import tributary_importer.fetch as fetch
from tests.importer.faults import Crash, CrashingStore, CrashingWriter
from tests.importer.test_import import fake_url, http, importer, landed, primary_keys
from tributary.batch import decode_ndjson_gz
from tributary.errors import PermanentError
from tributary.retry import retry
from tributary.testing import MemoryRawWriter
from tributary_importer.clients import client_for
from tributary_importer.cursor import CursorType
from tributary_importer.source import DeclaredSource, SourceSpec, SourcesSpec
from tributary_importer.state import MemoryStateStore
from tributary_importer.windows import just_after, slices

__all__ = ["fake_url", "http"]  # the module-scoped fixtures

EVENTS = 1200  # the fake's windowed events: one every 7 hours from 2025-01-01


def sources(url: str, **declared: dict[str, Any]) -> dict[str, DeclaredSource]:
    base = {"base_url": url, "rate_limit_rps": 1000}
    parsed = SourcesSpec.model_validate(
        {"sources": {name: {**base, **body} for name, body in declared.items()}}
    )
    return {name: DeclaredSource(name, spec) for name, spec in parsed.sources.items()}


def events(url: str, **incremental: Any) -> dict[str, Any]:
    return {
        "path": "/windowed/events",
        "dataset": "events",
        "pagination": {
            "kind": "page_number",
            "page_param": "_page",
            "size_param": "_limit",
            "page_size": 50,
        },
        "incremental": {
            "field": "occurred_at",
            "param": "since",
            "end_param": "until",
            "initial": "2025-01-01T00:00:00Z",
            "step": "7d",
            **incremental,
        },
    }


async def requests_to(http: httpx.AsyncClient, url: str, prefix: str) -> int:
    paths: dict[str, int] = (await http.get(f"{url}/__admin/variants")).json()["paths"]
    return sum(n for path, n in paths.items() if path.startswith(prefix))


def test_windows_cover_the_range_exactly() -> None:
    cut = list(slices("2025-01-01T00:00:00Z", "2025-01-03T12:00:00Z", "1d"))
    assert cut == [
        ("2025-01-01T00:00:00Z", "2025-01-02T00:00:00.000Z"),
        ("2025-01-02T00:00:00.000Z", "2025-01-03T00:00:00.000Z"),
        ("2025-01-03T00:00:00.000Z", "2025-01-03T12:00:00Z"),
    ]
    assert list(slices("2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "1d")) == []
    assert list(slices("a", None, None)) == [("a", None)]
    assert just_after("2025-01-01T00:00:00Z", CursorType.TIMESTAMP) == (
        "2025-01-01T00:00:00.000001Z"
    )
    assert just_after("41", CursorType.NUMBER) == "42"
    assert just_after("1.5", CursorType.NUMBER) is None


async def test_a_year_is_imported_in_windows_and_the_end_is_sent(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    declared = sources(fake_url, ev=events(fake_url))
    writer, store = MemoryRawWriter(), MemoryStateStore()
    run = importer(writer, store)  # its clock: 2026-03-01T12:00Z, the run's end
    before = await requests_to(http, fake_url, "/windowed/")
    first = await run.run_once(client_for("ev", declared, http))
    assert first.records == EVENTS
    assert len(landed(writer)) == EVENTS
    assert max(landed(writer).values()) == 1
    windows = -(-(424 * 24 + 12) // (7 * 24))  # 2025-01-01 .. 2026-03-01T12:00 in 7 days
    requests = await requests_to(http, fake_url, "/windowed/") - before
    assert requests >= windows  # every window asked for; pages of 50 within each
    state = await store.get("ev")
    assert state.run is None
    assert state.last_run["segments"] >= windows - 10
    assert first.cursor == "2025-12-17T00:00:00Z"  # the 1200th event: 1200 × 7 h in
    second = await run.run_once(client_for("ev", declared, http))
    assert (second.records, second.skipped) == (0, 1)  # only the boundary event re-read


async def test_without_a_step_the_vendors_range_cap_refuses_the_year(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    """The end goes to the vendor: it refuses a range over 31 days, which `step` avoids."""
    declared = sources(fake_url, ev=events(fake_url, step=None))
    with pytest.raises(PermanentError, match="at most 31 days later"):
        await importer(MemoryRawWriter(), MemoryStateStore()).run_once(
            client_for("ev", declared, http)
        )
    capped = sources(fake_url, ev=events(fake_url, step=None, end_value="2025-01-29T00:00:00Z"))
    writer = MemoryRawWriter()
    result = await importer(writer, MemoryStateStore()).run_once(client_for("ev", capped, http))
    assert result.records == 95  # 7 h apart from 07:00 on 1 Jan, the 95th at 665 h
    assert result.cursor == "2025-01-28T17:00:00Z"


async def test_a_backfill_sends_its_inclusive_end_to_the_vendor(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    declared = sources(fake_url, ev=events(fake_url))
    writer, store = MemoryRawWriter(), MemoryStateStore()
    result = await importer(writer, store).backfill(
        client_for("ev", declared, http), "2025-01-01T07:00:00Z", "2025-01-03T09:00:00Z"
    )
    assert result.records == 8  # 07:00, 14:00, 21:00 … up to 3 Jan 09:00 included
    assert (await store.get("ev")).cursor is None  # a backfill moves no cursor


@pytest.mark.parametrize(
    ("crash_at", "at"),
    [
        ("writer", (30, False)),
        ("writer", (30, True)),
        ("store", (20, False)),
        ("store", (20, True)),
    ],
    ids=["before_page", "after_page", "before_checkpoint", "after_checkpoint"],
)
async def test_a_crash_in_a_window_resumes_there_without_gap_or_duplicate(
    fake_url: str, http: httpx.AsyncClient, crash_at: str, at: tuple[int, bool]
) -> None:
    # one request per window (no pages in flight past a short page): requests count windows
    declared = sources(fake_url, ev={**events(fake_url), "concurrency": 1})
    start = await requests_to(http, fake_url, "/windowed/")
    await importer(MemoryRawWriter(), MemoryStateStore()).run_once(client_for("ev", declared, http))
    full = await requests_to(http, fake_url, "/windowed/") - start  # one uninterrupted run
    writer, store = CrashingWriter(), CrashingStore()
    (writer if crash_at == "writer" else store).at = at
    before = await requests_to(http, fake_url, "/windowed/")
    with pytest.raises(Crash):
        await importer(writer, store).run_once(client_for("ev", declared, http))
    crashed = await requests_to(http, fake_url, "/windowed/") - before
    writer.at = store.at = None
    resumed = await importer(writer, store).run_once(client_for("ev", declared, http))
    assert resumed.resumed
    assert len(landed(writer)) == EVENTS
    assert max(landed(writer).values()) == 1
    total = await requests_to(http, fake_url, "/windowed/") - before
    # the windows done before the crash were not asked for again; the one in progress was
    assert total - crashed <= full - crashed + 2
    assert total - crashed < full - 10


def comments(url: str, **kw: Any) -> dict[str, dict[str, Any]]:
    page = {"kind": "page_number", "page_param": "_page", "size_param": "_limit"}
    return {
        "posts": {"path": "/posts", "dataset": "posts", "pagination": {**page, "page_size": 20}},
        "post_comments": {
            "path": "/posts/{post_id}/comments",
            "dataset": "comments",
            "resolve": {"post_id": {"resource": "posts", "field": "id"}},
            "include_from_parent": ["title"],
            "response_actions": [{"status_code": 404, "action": "ignore"}],
            **kw,
        },
    }


async def test_a_child_resource_is_fetched_per_parent_record(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    declared = sources(fake_url, **comments(fake_url))
    writer = MemoryRawWriter()
    client = client_for("post_comments", declared, http)
    result = await importer(writer, MemoryStateStore()).run_once(client)
    # every 25th post has no comments: the vendor's 404, declared empty
    assert result.records == 96 * 5
    assert client.ignored == 4
    ids = primary_keys(landed(writer))
    assert ids == Counter(str(c) for c in range(1, 501) if ((c - 1) // 5 + 1) % 25)
    posts = {p["id"]: p for p in (await http.get(f"{fake_url}/posts")).json()}
    for obj in writer.objects.values():
        for line in decode_ndjson_gz(obj.body):
            data = orjson.loads(line)["data"]
            assert data["_posts_title"] == posts[data["postId"]]["title"]
    again = await importer(MemoryRawWriter(), MemoryStateStore()).run_once(client)
    assert again.records == 480  # a full refresh of each parent


def user_items(url: str) -> dict[str, dict[str, Any]]:
    return {
        "users": {"path": "/users", "dataset": "users"},
        "user_items": {
            "path": "/users/{user_id}/items",
            "dataset": "items",
            "resolve": {"user_id": {"resource": "users", "field": "id"}},
            "pagination": {
                "kind": "page_number",
                "page_param": "_page",
                "size_param": "_limit",
                "page_size": 2,
            },
            "incremental": {
                "field": "updated_at",
                "param": "updated_since",
                "initial": "2026-01-01T00:00:00Z",
            },
        },
    }


async def test_a_child_is_incremental_per_parent(fake_url: str, http: httpx.AsyncClient) -> None:
    declared = sources(fake_url, **user_items(fake_url))
    writer, store = MemoryRawWriter(), MemoryStateStore()
    run = importer(writer, store)
    served = len((await http.get(f"{fake_url}/changes/items")).json())
    first = await run.run_once(client_for("user_items", declared, http))
    assert first.records == served
    state = await store.get("user_items")
    assert len(state.parents) == 10  # a cursor per user
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 3, "added": 4})
    second = await run.run_once(client_for("user_items", declared, http))
    assert second.records == 7
    third = await run.run_once(client_for("user_items", declared, http))
    assert third.records == 0
    assert max(landed(writer).values()) == 1


@pytest.mark.parametrize(
    ("crash_at", "at"),
    [
        ("writer", (40, False)),
        ("writer", (40, True)),
        ("store", (4, False)),
        ("store", (4, True)),
    ],
    ids=["before_page", "after_page", "before_checkpoint", "after_checkpoint"],
)
async def test_a_crash_half_way_through_the_parents_resumes_at_that_parent(
    fake_url: str, http: httpx.AsyncClient, crash_at: str, at: tuple[int, bool]
) -> None:
    declared = sources(fake_url, **comments(fake_url))
    writer, store = CrashingWriter(), CrashingStore()
    (writer if crash_at == "writer" else store).at = at
    first_parent = await requests_to(http, fake_url, "/posts/1/comments")
    with pytest.raises(Crash):
        await importer(writer, store).run_once(client_for("post_comments", declared, http))
    writer.at = store.at = None
    resumed = await importer(writer, store).run_once(client_for("post_comments", declared, http))
    assert resumed.resumed
    assert len(landed(writer)) == 480
    assert max(landed(writer).values()) == 1
    # the parents done before the crash were not asked for again
    assert await requests_to(http, fake_url, "/posts/1/comments") == first_parent + 1


async def test_parents_that_moved_under_an_interrupted_run_are_all_done_again_once(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    """The parent list (items by updated_at) reorders when items change: the resumed run finds
    the last done parent elsewhere, starts again at the first with every landed id read back."""
    declared = sources(
        fake_url,
        items={"path": "/changes/items", "dataset": "items"},
        by_item={
            "path": "/users/{uid}/items",
            "dataset": "items",
            "resolve": {"uid": {"resource": "items", "field": "id"}},
        },
    )
    writer, store = CrashingWriter(), CrashingStore()
    store.at = (4, True)  # after the 3rd checkpoint
    with contextlib.suppress(Crash):
        await importer(writer, store).run_once(client_for("by_item", declared, http))
    store.at = None
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 8, "added": 0})
    await importer(writer, store).run_once(client_for("by_item", declared, http))
    counts = landed(writer)
    assert max(counts.values()) == 1
    current = {f"{r['id']}" for r in (await http.get(f"{fake_url}/changes/items")).json()}
    assert current <= set(primary_keys(counts))


def test_declaration_errors_are_clear(fake_url: str) -> None:
    with pytest.raises(ValueError, match="resolve names 'nope', which is not a source"):
        sources(
            fake_url,
            c={
                **comments(fake_url)["post_comments"],
                "resolve": {"post_id": {"resource": "nope", "field": "id"}},
            },
        )
    with pytest.raises(ValueError, match="must be exactly the resolve keys"):
        SourceSpec.model_validate({"base_url": fake_url, "path": "/p/{x}", "dataset": "d"})
    with pytest.raises(ValueError, match="step needs end_param"):
        SourceSpec.model_validate(
            {
                **events(fake_url),
                "base_url": fake_url,
                "incremental": {
                    "field": "t",
                    "param": "since",
                    "initial": "2025-01-01T00:00:00Z",
                    "step": "1d",
                },
            }
        )


async def test_transient_faults_and_retry_after_in_child_windowed_and_oauth_runs(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    """503s, truncated bodies and 429 + Retry-After on every variant route (the token endpoint
    too) are retried; each run still lands every record once."""
    declared = sources(
        fake_url,
        **comments(fake_url, max_attempts=12),
        ev={**events(fake_url), "max_attempts": 12},
        oauth={
            "path": "/oauth/posts",
            "dataset": "posts",
            "max_attempts": 12,
            "auth": {
                "kind": "oauth2_client_credentials",
                "token_url": f"{fake_url}/oauth/token",
                "client_id": "tributary",
                "secret": "fake-oauth-secret",
            },
            # 50 pages: some meet a fault whatever the timing (429s depend on it)
            "pagination": {"kind": "header_cursor", "cursor_param": "after", "page_size": 2},
        },
    )
    expected = {"post_comments": 480, "ev": EVENTS, "oauth": 100}
    for name, count in expected.items():
        # The next two requests meet a 429 whatever the machine's speed: for the oauth run its
        # token request, twice (`limit_path`: a page request the run before cancelled may still
        # reach the fake after this); the 503s and the bucket add more faults to every run.
        faults = {"error_rate": 0.2, "truncate_rate": 0.1, "rate_limit_rps": 20, "limit_next": 2}
        faults["limit_path"] = "/oauth/token" if name == "oauth" else "/"
        await http.put(f"{fake_url}/__admin/faults", json={**faults, "retry_after": "0"})
        writer = MemoryRawWriter()
        client = client_for(name, declared, http)
        result = await importer(writer, MemoryStateStore()).run_once(client)
        assert result.records == count, name
        assert len(landed(writer)) == count
        assert max(landed(writer).values()) == 1
        assert client.retries > 0, name
    injected = (await http.get(f"{fake_url}/__admin/stats")).json()["injected"]
    assert {"429", "503"} <= set(injected)


@pytest.mark.parametrize("crashes", [1, 2], ids=["one_crash", "crash_after_the_moved_restart"])
async def test_parents_that_reorder_after_a_crash_land_each_child_once(
    fake_url: str, http: httpx.AsyncClient, crashes: int
) -> None:
    """Post 20's comments landed, then the process died before its checkpoint; the posts
    reorder (20 last, or 5 last: a parent already checkpointed) before the resume, and with
    two crashes the resume dies again right after it started the parents again."""
    declared = sources(fake_url, **comments(fake_url))
    writer, store = CrashingWriter(), CrashingStore()
    writer.at = (20, True)  # after the page of post 20 (posts 1-19 have one page each)
    try:
        with pytest.raises(Crash):
            await importer(writer, store).run_once(client_for("post_comments", declared, http))
        writer.at = None
        moved = 20 if crashes == 1 else 5
        await http.post(f"{fake_url}/__admin/reorder", json={"resource": "posts", "last": [moved]})
        if crashes == 2:
            store.at = (store.count + 2, False)  # the first checkpoint after the restart
            with pytest.raises(Crash):
                await importer(writer, store).run_once(client_for("post_comments", declared, http))
            store.at = None
        await importer(writer, store).run_once(client_for("post_comments", declared, http))
    finally:
        await http.post(f"{fake_url}/__admin/reorder", json={"resource": "posts", "last": []})
    counts = landed(writer)
    assert len(counts) == 480
    assert max(counts.values()) == 1


async def test_a_child_sends_the_runs_end_and_a_backfills_bounds_to_the_vendor(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    served = (await http.get(f"{fake_url}/changes/items")).json()
    times = sorted(i["updated_at"] for i in served)
    low, high = times[len(times) // 4], times[len(times) // 2]
    declared_body = user_items(fake_url)
    declared_body["user_items"]["incremental"] |= {"end_param": "updated_before"}
    bounded = dict(declared_body)
    bounded["user_items"] = {
        **declared_body["user_items"],
        "incremental": {**declared_body["user_items"]["incremental"], "end_value": high},
    }
    declared = sources(fake_url, **bounded)
    writer, store = MemoryRawWriter(), MemoryStateStore()
    await importer(writer, store).run_once(client_for("user_items", declared, http))
    got = [orjson.loads(line)["data"]["updated_at"] for line in landed_lines(writer)]
    assert sorted(got) == [t for t in times if t < high]  # end_value sent: nothing after it
    cursors = [p["cursor"] for p in (await store.get("user_items")).parents.values()]
    assert max(cursors) < high
    writer = MemoryRawWriter()
    plain = sources(fake_url, **declared_body)
    await importer(writer, MemoryStateStore()).backfill(
        client_for("user_items", plain, http), low, high
    )
    got = [orjson.loads(line)["data"]["updated_at"] for line in landed_lines(writer)]
    assert sorted(got) == [t for t in times if low <= t <= high]


def landed_lines(writer: MemoryRawWriter) -> list[bytes]:
    return [line for obj in writer.objects.values() for line in decode_ndjson_gz(obj.body)]


@pytest.mark.parametrize(
    ("start", "end"),
    [("yesterday", "2025-02-01T00:00:00Z"), ("2025-01-01T00:00:00Z", "2025-13-45")],
    ids=["bad_from", "bad_to"],
)
async def test_bad_backfill_bounds_of_a_windowed_source_are_refused_before_recording(
    fake_url: str, http: httpx.AsyncClient, start: str, end: str
) -> None:
    declared = sources(fake_url, ev=events(fake_url))
    store = MemoryStateStore()
    with pytest.raises(PermanentError, match="is not a timestamp"):
        await importer(MemoryRawWriter(), store).backfill(
            client_for("ev", declared, http), start, end
        )
    assert not store.items  # no run recorded


@pytest.mark.parametrize("retry_after", ["2", "date"], ids=["seconds", "http_date"])
async def test_retry_after_is_honoured_on_child_windowed_and_token_routes(
    fake_url: str,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    retry_after: str,
) -> None:
    """Every 429 is followed by a pause of at least its Retry-After (the retry helper's sleep
    is injected: it records the pause and waits only a moment, for the fake's bucket)."""
    pauses: list[float] = []

    async def sleep(pause: float) -> None:
        pauses.append(pause)
        await asyncio.sleep(0.3)

    monkeypatch.setattr(fetch, "retry", functools.partial(retry, sleep=sleep))
    declared = sources(
        fake_url,
        **comments(fake_url, max_attempts=12),
        ev={**events(fake_url), "max_attempts": 12},
        oauth={
            "path": "/oauth/posts",
            "dataset": "posts",
            "max_attempts": 12,
            "auth": {
                "kind": "oauth2_client_credentials",
                "token_url": f"{fake_url}/oauth/token",
                "client_id": "tributary",
                "secret": "fake-oauth-secret",
            },
            "pagination": {"kind": "header_cursor", "cursor_param": "after", "page_size": 10},
        },
    )
    at = datetime.now(UTC) + timedelta(seconds=120)  # the sleep is injected: no real wait
    header = "2" if retry_after == "2" else format_datetime(at, usegmt=True)
    least = 2.0 if retry_after == "2" else 60.0
    await http.put(f"{fake_url}/__admin/faults", json={"rate_limit_rps": 10, "retry_after": header})
    caplog.set_level(logging.INFO, logger="tributary.retry")
    try:
        for name in ("post_comments", "ev", "oauth"):
            if name == "oauth":  # its first request, the token, meets a 429
                # (on the token path only: a page request of the run before, cancelled by the
                # importer once it found the last page, may still reach the fake after this)
                faults = {
                    "rate_limit_rps": 10,
                    "retry_after": header,
                    "limit_next": 1,
                    "limit_path": "/oauth/token",
                }
                await http.put(f"{fake_url}/__admin/faults", json=faults)
            await importer(MemoryRawWriter(), MemoryStateStore()).run_once(
                client_for(name, declared, http)
            )
    finally:
        await http.put(f"{fake_url}/__admin/faults", json={})
    said = [
        (str(getattr(r, "error", "")), float(getattr(r, "pause_s", 0)))
        for r in caplog.records
        if r.getMessage() == "retrying"
    ]
    limited = [(error, pause) for error, pause in said if "429" in error]
    routes = {w for e, _ in limited for w in ("/posts/", "/windowed/", "token endpoint") if w in e}
    assert routes == {"/posts/", "/windowed/", "token endpoint"}
    assert all(pause >= least for _, pause in limited), limited
