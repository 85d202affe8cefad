"""The ingest middleware (tributary_api.asgi) answers ingest POSTs below FastAPI's routing with
exactly the answers the FastAPI route gives: same status, body, headers, refusal metric, and
the same envelopes in the sink."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.requests import ClientDisconnect

from tests.api.conftest import AUTH, POSTS_KEY, api_settings
from tributary.dataset import DatasetRegistry
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_api.app import create_app
from tributary_api.asgi import IngestMiddleware
from tributary_api.handlers import Handlers
from tributary_api.testing import FlakySink, fixed_backends

POSTS = "/v1/datasets/posts/records"
GOOD = orjson.dumps([{"userId": 1, "id": i, "title": "t", "body": "b"} for i in range(1, 4)])
MIXED = orjson.dumps([{"userId": 1, "id": 1, "title": "t", "body": "b"}, {"userId": 0}])
IDEM = {**AUTH, "Idempotency-Key": "k-1"}


def keyed(n: int) -> dict[str, str]:
    """Headers with the n-th Idempotency-Key: the request id, so the answer, is then fixed."""
    return {**AUTH, "Idempotency-Key": f"k-{n}"}


REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("valid", POSTS, IDEM, GOOD),
    ("mixed: 202 with errors", POSTS, IDEM, MIXED),
    ("all invalid: 422", POSTS, IDEM, b'[{"userId": "x"}]'),
    ("one object", POSTS, IDEM, b'{"userId": 1, "id": 9, "title": "t", "body": "b"}'),
    (
        "records member",
        POSTS,
        IDEM,
        b'{"records": [{"userId": 1, "id": 9, "title": "t", "body": "b"}]}',
    ),
    (
        "ndjson",
        POSTS,
        {**IDEM, "Content-Type": "application/x-ndjson"},
        b'{"userId":1,"id":2,"title":"t","body":"b"}\n',
    ),
    ("gzip", POSTS, {**IDEM, "Content-Encoding": "gzip"}, gzip.compress(GOOD)),
    ("bad gzip", POSTS, {**IDEM, "Content-Encoding": "gzip"}, b"not gzip"),
    ("no key: 401", POSTS, {}, GOOD),
    ("wrong key: 401", POSTS, {"X-API-Key": "nope"}, GOOD),
    ("key may not write: 404", "/v1/datasets/events/records", {"X-API-Key": POSTS_KEY}, GOOD),
    ("unknown dataset: 404", "/v1/datasets/nope/records", IDEM, GOOD),
    ("media type: 415", POSTS, {**IDEM, "Content-Type": "text/csv"}, GOOD),
    ("encoding: 415", POSTS, {**IDEM, "Content-Encoding": "br"}, GOOD),
    ("malformed: 400", POSTS, IDEM, b"[{"),
    ("empty: 400", POSTS, IDEM, b"[]"),
    ("bad idempotency key: 400", POSTS, {**AUTH, "Idempotency-Key": "a b"}, GOOD),
    ("too many records: 413", POSTS, IDEM, orjson.dumps([{}] * 11)),
    ("too large: 413", POSTS, IDEM, b"[" + b" " * 3000 + b"]"),
]


@dataclass
class Served:
    client: httpx.AsyncClient
    sink: FlakySink
    quarantine: MemoryRawWriter
    metrics: MemoryMetrics
    clock: FakeClock
    app: FastAPI


def _app(registry: DatasetRegistry, middleware: bool, **overrides: Any) -> Served:
    sink, quarantine, metrics, clock = FlakySink(), MemoryRawWriter(), MemoryMetrics(), FakeClock()
    app: FastAPI = create_app(
        api_settings(**{"API_MAX_RECORDS": 10, "API_MAX_BODY_BYTES": 2048, **overrides}),
        registry=registry,
        backends=fixed_backends(sink, quarantine),
        clock=clock,
        metrics=metrics,
    )
    if not middleware:  # the same app, every request through FastAPI's route
        app.user_middleware = [m for m in app.user_middleware if m.cls is not IngestMiddleware]
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://api")
    return Served(client, sink, quarantine, metrics, clock, app)


@asynccontextmanager
async def served(
    registry: DatasetRegistry, middleware: bool, **overrides: Any
) -> AsyncIterator[Any]:
    api = _app(registry, middleware, **overrides)
    async with api.app.router.lifespan_context(api.app), api.client:
        yield api.client, api.sink, api.quarantine, api.metrics


def _answer(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    return response.status_code, response.content, sorted(response.headers.multi_items())


@pytest.mark.parametrize(
    ("what", "path", "headers", "body"), REQUESTS, ids=[r[0] for r in REQUESTS]
)
async def test_the_middleware_answers_as_the_route_does(
    registry: DatasetRegistry, what: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    answers: list[Any] = []
    written: list[Any] = []
    refused: list[Any] = []
    for middleware in (True, False):
        async with served(registry, middleware) as (client, sink, quarantine, metrics):
            response = await client.post(path, content=body, headers=headers)
            answers.append(_answer(response))
            written.append(
                (
                    [[r.line for r in d.records] for d in sink.deliveries],
                    {k: v.body for k, v in quarantine.objects.items()},
                )
            )
            refused.append(dict(metrics.totals))
    assert answers[0] == answers[1], what
    assert written[0] == written[1], what
    assert refused[0] == refused[1], what


async def test_ingest_posts_do_not_reach_fastapi_routing(
    registry: DatasetRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not vacuous: the route's handler is not called for a registered dataset (it is for a
    dataset the registry does not name, which the route answers 404), nor for other routes."""
    routed: list[str] = []
    original = Handlers.post_records

    async def spy(self: Handlers, request: Any) -> Any:
        routed.append(request.url.path)
        return await original(self, request)

    monkeypatch.setattr(Handlers, "post_records", spy)
    async with served(registry, True) as (client, sink, _, _):
        ok = await client.post(POSTS, content=GOOD, headers=AUTH)
        assert ok.status_code == 202, ok.text
        assert sink.deliveries
        assert routed == []
        assert (
            await client.post("/v1/datasets/nope/records", content=GOOD, headers=AUTH)
        ).status_code == 404
        assert routed == ["/v1/datasets/nope/records"]
        assert (await client.get(POSTS, headers=AUTH)).status_code == 405
        assert (await client.get("/healthz")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
        assert "post" in spec["paths"]["/v1/datasets/posts/records"]  # still documented


async def test_a_client_that_goes_away_mid_body_writes_nothing(registry: DatasetRegistry) -> None:
    """A disconnect while the body streams in raises `ClientDisconnect` on both paths (as
    `Request.stream` does; ServerErrorMiddleware's 500 goes to a client that is gone), nothing
    lands, the same metrics are counted, and the admission budget is given back."""
    outcomes = [await _disconnected(registry, middleware) for middleware in (True, False)]
    assert outcomes[0] == outcomes[1]
    sent, _ = outcomes[0]
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [500]


async def _disconnected(registry: DatasetRegistry, middleware: bool) -> tuple[Any, Any]:
    """What one app sent and counted for a POST whose client leaves mid-body."""
    api = _app(registry, middleware)
    messages = [
        {"type": "http.request", "body": b'[{"userId": 1,', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": POSTS,
        "raw_path": POSTS.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", AUTH["Authorization"].encode()), (b"host", b"api")],
        "client": ("127.0.0.1", 1),
        "server": ("api", 80),
    }
    async with api.app.router.lifespan_context(api.app):
        with pytest.raises(ClientDisconnect):
            await api.app(scope, receive, send)
        runtime = api.app.state.runtime
        assert (runtime.in_flight, runtime.in_flight_bytes) == (0, 0)
    assert messages == []  # the body was read up to the disconnect
    assert not api.sink.deliveries
    assert not api.quarantine.objects
    return sent, dict(api.metrics.totals)


# --- refusals that need state (sink down, requests in flight, a spent rate, a used key) ------

Scenario = Callable[[Served], Awaitable[list[httpx.Response]]]


async def _sink_down(api: Served) -> list[httpx.Response]:
    api.sink.down = True
    return [await api.client.post(POSTS, content=GOOD, headers=IDEM)]


async def _overloaded(api: Served) -> list[httpx.Response]:
    entered, release = asyncio.Event(), asyncio.Event()
    original = api.sink.deliver

    async def held(delivery: Any) -> None:
        entered.set()
        await release.wait()
        await original(delivery)

    api.sink.deliver = held  # type: ignore[method-assign]
    first = asyncio.create_task(api.client.post(POSTS, content=GOOD, headers=keyed(1)))
    await asyncio.wait_for(entered.wait(), 5)
    second = await api.client.post(POSTS, content=MIXED, headers=keyed(2))
    release.set()
    return [await first, second]


async def _rate_limited(api: Served) -> list[httpx.Response]:
    answers = [await api.client.post(POSTS, content=GOOD, headers=keyed(n)) for n in range(3)]
    api.clock.advance(0.3)  # a Retry-After computed from what is left of the wait
    answers.append(await api.client.post(POSTS, content=GOOD, headers=keyed(3)))
    api.clock.advance(5.0)
    answers.append(await api.client.post(POSTS, content=GOOD, headers=keyed(4)))
    return answers


async def _key_reused(api: Served) -> list[httpx.Response]:
    first = await api.client.post(POSTS, content=GOOD, headers=IDEM)
    replay = await api.client.post(POSTS, content=GOOD, headers=IDEM)
    other = await api.client.post(POSTS, content=MIXED, headers=IDEM)
    return [first, replay, other]


async def _record_too_large(api: Served) -> list[httpx.Response]:
    big = orjson.dumps([{"userId": 1, "id": 1, "title": "t", "body": "b" * 600}])
    return [await api.client.post(POSTS, content=big, headers=IDEM)]


async def _chunked_over_cap(api: Served) -> list[httpx.Response]:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"["
        for _ in range(30):
            yield b" " * 100
        yield b"]"

    return [await api.client.post(POSTS, content=chunks(), headers=IDEM)]


async def _chunked_under_cap(api: Served) -> list[httpx.Response]:
    async def chunks() -> AsyncIterator[bytes]:
        yield GOOD[:7]
        yield GOOD[7:]

    return [await api.client.post(POSTS, content=chunks(), headers=IDEM)]


async def _not_the_ingest_route(api: Served) -> list[httpx.Response]:
    return [
        await api.client.post(POSTS + "/", content=GOOD, headers=IDEM),
        await api.client.request("HEAD", POSTS, headers=AUTH),
        await api.client.request("OPTIONS", POSTS, headers=AUTH),
        await api.client.put(POSTS, content=GOOD, headers=AUTH),
    ]


# (what, settings, scenario, the (status, error code) of each answer: the case is the one named)
SCENARIOS: list[tuple[str, dict[str, Any], Scenario, list[tuple[int, str | None]]]] = [
    ("sink down: 503", {}, _sink_down, [(503, "sink_unavailable")]),
    (
        "in flight: 503",
        {"API_MAX_IN_FLIGHT": 1},
        _overloaded,
        [(202, None), (503, "overloaded")],
    ),
    (
        "rate: 429",
        {"API_RATE_LIMIT_RPS": 0.5, "API_RATE_LIMIT_BURST": 2},
        _rate_limited,
        [(202, None), (202, None), (429, "rate_limited"), (429, "rate_limited"), (202, None)],
    ),
    (
        "same key, other body: 409",
        {},
        _key_reused,
        [(202, None), (202, None), (409, "idempotency_key_reused")],
    ),
    (
        "record over the record cap: 413",
        {"API_MAX_RECORD_BYTES": 512},
        _record_too_large,
        [(413, "record_too_large")],
    ),
    ("chunked body over the cap: 413", {}, _chunked_over_cap, [(413, "body_too_large")]),
    ("chunked body under the cap: 202", {}, _chunked_under_cap, [(202, None)]),
    (
        "trailing slash 307, HEAD/OPTIONS/PUT 405",
        {},
        _not_the_ingest_route,
        [(307, None), (405, None), (405, None), (405, None)],
    ),
]


def _status_and_code(answer: tuple[int, bytes, Any]) -> tuple[int, str | None]:
    status, content, _ = answer
    error = orjson.loads(content).get("error") if content.startswith(b"{") else None
    return status, error if isinstance(error, str) else None


@pytest.mark.parametrize(
    ("what", "overrides", "scenario", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
async def test_the_middleware_refuses_as_the_route_does(
    registry: DatasetRegistry,
    what: str,
    overrides: dict[str, Any],
    scenario: Scenario,
    expected: list[tuple[int, str | None]],
) -> None:
    """Same statuses, bodies, headers (Retry-After included), refusal metrics and writes, and
    the admission budget given back, with and without the middleware."""
    outcomes = []
    for middleware in (True, False):
        api = _app(registry, middleware, **overrides)
        async with api.app.router.lifespan_context(api.app), api.client:
            answers = [_answer(r) for r in await scenario(api)]
            runtime = api.app.state.runtime
            outcomes.append(
                (
                    answers,
                    [[r.line for r in d.records] for d in api.sink.deliveries],
                    {k: v.body for k, v in api.quarantine.objects.items()},
                    dict(api.metrics.totals),
                    (runtime.in_flight, runtime.in_flight_bytes),
                )
            )
    assert [_status_and_code(a) for a in outcomes[0][0]] == expected, what
    assert outcomes[0] == outcomes[1], what
    assert outcomes[0][4] == (0, 0), what
