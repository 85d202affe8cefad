"""The app in-process with in-memory backends: every error path and the happy paths."""

from __future__ import annotations

import asyncio
import gzip
import re
from typing import Any

import orjson
import pytest

from tests.api.conftest import AUTH, POSTS_KEY, ApiFactory, InProcessApi
from tributary.batch import decode_ndjson_gz
from tributary_stack import samples

POSTS = "/v1/datasets/posts/records"
EVENTS = "/v1/datasets/events/records"
JSON = {"Content-Type": "application/json"}


def post(i: int = 1) -> dict[str, Any]:
    return {"userId": 1, "id": i, "title": "t", "body": "b"}


# (name, path, headers, body, status, error code, message fragment)
BAD_INPUT: list[tuple[str, str, dict[str, str], bytes, int, str, str]] = [
    ("no key", POSTS, JSON, orjson.dumps(post()), 401, "unauthorized", "send a valid API key"),
    (
        "wrong key",
        POSTS,
        {**JSON, "X-API-Key": "nope"},
        orjson.dumps(post()),
        401,
        "unauthorized",
        "Bearer",
    ),
    (
        "dataset not allowed",
        EVENTS,
        {**JSON, "X-API-Key": POSTS_KEY},
        orjson.dumps({"type": "x"}),
        404,
        "unknown_dataset",
        re.escape("dataset 'events' is not one this key may write; it may write: ['posts']"),
    ),
    (
        "unknown dataset",
        "/v1/datasets/nope/records",
        {**JSON, **AUTH},
        orjson.dumps(post()),
        404,
        "unknown_dataset",
        "dataset 'nope' is not one this key may write",
    ),
    (
        "malformed JSON",
        POSTS,
        {**JSON, **AUTH},
        b'[{"userId": 1,',
        400,
        "malformed_body",
        "body is not valid JSON: .* line 1 column",
    ),
    (
        "malformed NDJSON",
        POSTS,
        {"Content-Type": "application/x-ndjson", **AUTH},
        orjson.dumps(post()) + b"\n{oops}\n",
        400,
        "malformed_body",
        "NDJSON line 2",
    ),
    ("scalar body", POSTS, {**JSON, **AUTH}, b"17", 400, "malformed_body", "must be a JSON object"),
    (
        "bad gzip",
        POSTS,
        {**JSON, **AUTH, "Content-Encoding": "gzip"},
        b"plain",
        400,
        "bad_gzip",
        "not valid gzip",
    ),
    (
        "bad idempotency key",
        POSTS,
        {**JSON, **AUTH, "Idempotency-Key": "has space"},
        orjson.dumps(post()),
        400,
        "bad_idempotency_key",
        "visible ASCII",
    ),
    (
        "body too large",
        POSTS,
        {**JSON, **AUTH},
        b"[" + b" " * 6_000_000 + b"]",
        413,
        "body_too_large",
        "exceeds the limit of 5242880 bytes",
    ),
    (
        "zip bomb",
        POSTS,
        {**JSON, **AUTH, "Content-Encoding": "gzip"},
        gzip.compress(b"[" + b" " * 50_000_000 + b"]"),
        413,
        "body_too_large",
        "decompressed request body exceeds",
    ),
    (
        "too many records",
        POSTS,
        {**JSON, **AUTH},
        orjson.dumps([post(i) for i in range(501)]),
        413,
        "too_many_records",
        "more than 500 records in one request",
    ),
    (
        "record too large",
        POSTS,
        {**JSON, **AUTH},
        orjson.dumps([post(1), {**post(2), "body": "x" * 1_100_000}]),
        413,
        "record_too_large",
        "record 1 is .* bytes",
    ),
    (
        "unsupported media type",
        POSTS,
        {"Content-Type": "text/csv", **AUTH},
        b"a,b",
        415,
        "unsupported_media_type",
        "text/csv",
    ),
    (
        "unsupported encoding",
        POSTS,
        {**JSON, **AUTH, "Content-Encoding": "br"},
        b"..",
        415,
        "unsupported_encoding",
        "'br'",
    ),
]


@pytest.mark.parametrize(
    ("name", "path", "headers", "body", "status", "code", "message"),
    BAD_INPUT,
    ids=[case[0] for case in BAD_INPUT],
)
async def test_bad_input_is_refused_whole_and_nothing_is_written(
    api: InProcessApi,
    name: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
    message: str,
) -> None:
    response = await api.client.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["error"] == code
    assert re.search(message, problem["message"]), problem["message"]
    assert api.nothing_written()


async def test_all_invalid_is_422_and_everything_is_quarantined(api: InProcessApi) -> None:
    records = [{"userId": 1}, "nope"]
    response = await api.client.post(POSTS, json=records, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert (body["accepted"], body["rejected"], body["ids"]) == (0, 2, [])
    assert {(e["index"], e["field"]) for e in body["errors"]} == {
        (0, "id"),
        (0, "title"),
        (0, "body"),
        (1, ""),
    }
    assert not api.sink.deliveries
    (obj,) = api.quarantine.objects.values()
    lines = [orjson.loads(line) for line in decode_ndjson_gz(obj.body)]
    assert [line["data"] for line in lines] == records
    assert lines[1]["errors"] == [
        {"field": "", "message": "record must be a JSON object, got string"}
    ]


async def test_mixed_request_accepts_valid_quarantines_invalid(api: InProcessApi) -> None:
    records = [post(1), {"userId": "x", "id": 2, "title": "t", "body": "b"}, post(3)]
    response = await api.client.post(
        POSTS, json=records, headers={**AUTH, "Idempotency-Key": "req-1"}
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"], body["ids"]) == (2, 1, ["1", "3"])
    assert body["errors"] == [
        {"index": 1, "field": "userId", "message": "must be integer, got string"}
    ]
    assert body["request_id"] == "req-1"
    (delivery,) = api.sink.deliveries
    envelopes = [orjson.loads(r.line) for r in delivery.records]
    assert [e["data"] for e in envelopes] == [records[0], records[2]]
    assert {e["source"] for e in envelopes} == {"api:all"}
    assert envelopes[0]["received_at"] == "2026-01-02T03:04:05.000Z"
    assert [r.partition_key for r in delivery.records] == ["1", "1"]
    (key,) = api.quarantined()
    assert key.startswith("quarantine/posts/year=2026/month=01/day=02/hour=03/api-")
    assert api.metrics.total("RecordsAccepted", dataset="posts") == 2
    assert api.metrics.total("RecordsRejected", dataset="posts") == 1


async def test_ids_derive_from_idempotency_key(api: InProcessApi) -> None:
    events = [{"type": "click"}, {"type": "view", "id": "own-id"}]
    headers = {**AUTH, "Idempotency-Key": "evt-batch-9"}
    first = (await api.client.post(EVENTS, json=events, headers=headers)).json()
    again = (await api.client.post(EVENTS, json=events, headers=headers)).json()
    other = (await api.client.post(EVENTS, json=events, headers={**AUTH})).json()
    assert first["ids"] == again["ids"]
    assert first["ids"][1] == "own-id"
    assert other["ids"][0] != first["ids"][0]
    assert other["ids"][1] == "own-id"
    assert first["ids"][0] == api.sink.deliveries[0].records[0].id


@pytest.mark.parametrize("form", ["object", "array", "records", "ndjson", "ndjson-gzip"])
async def test_every_body_form(api: InProcessApi, form: str) -> None:
    records = samples.posts(3)
    headers = dict(AUTH)
    if form == "object":
        content = orjson.dumps(records[0])
        records = records[:1]
    elif form == "array":
        content = orjson.dumps(records)
    elif form == "records":
        content = orjson.dumps({"records": records})
    else:
        content = b"\n".join(orjson.dumps(r) for r in records)
        headers["Content-Type"] = "application/x-ndjson"
        if form == "ndjson-gzip":
            content = gzip.compress(content)
            headers["Content-Encoding"] = "gzip"
    response = await api.client.post(POSTS, content=content, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["ids"] == [str(r["id"]) for r in records]
    assert [orjson.loads(r.line)["data"] for r in api.sink.deliveries[0].records] == records


async def test_sink_failure_is_503_and_nothing_acknowledged(api: InProcessApi) -> None:
    api.sink.down = True
    response = await api.client.post(POSTS, json=[post(1)], headers=AUTH)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "sink_unavailable"
    assert api.nothing_written()
    ready = await api.client.get("/readyz")
    assert ready.status_code == 503
    api.sink.down = False  # recovery: the same request now succeeds
    assert (await api.client.post(POSTS, json=[post(1)], headers=AUTH)).status_code == 202
    assert (await api.client.get("/readyz")).status_code == 200


async def test_quarantine_failure_is_503_and_the_retry_completes(api: InProcessApi) -> None:
    headers = {**AUTH, "Idempotency-Key": "q-1"}
    records = [post(1), {"bad": True}]
    original = api.sink.deliver

    async def deliver_then_break_quarantine(delivery: Any) -> None:
        await original(delivery)
        api.quarantine.fail_next(1)  # the sink succeeded; the quarantine put after it fails

    api.sink.deliver = deliver_then_break_quarantine  # type: ignore[method-assign]
    refused = await api.client.post(POSTS, json=records, headers=headers)
    assert refused.status_code == 503
    assert not api.quarantined()
    api.sink.deliver = original  # type: ignore[method-assign]
    retried = await api.client.post(POSTS, json=records, headers=headers)
    assert retried.status_code == 202
    assert len(api.quarantined()) == 1


async def test_rate_limit_is_429_with_retry_after(make_api: ApiFactory) -> None:
    async with make_api(API_RATE_LIMIT_RPS=1, API_RATE_LIMIT_BURST=2) as api:
        statuses = [
            (await api.client.post(POSTS, json=post(), headers=AUTH)).status_code for _ in range(3)
        ]
        assert statuses == [202, 202, 429]
        limited = await api.client.post(POSTS, json=post(), headers=AUTH)
        assert limited.headers["Retry-After"] == "1"
        assert "1 requests/s" in limited.json()["message"]
        api.clock.advance(1.0)
        assert (await api.client.post(POSTS, json=post(), headers=AUTH)).status_code == 202
        assert len(api.sink.deliveries) == 3


async def test_in_flight_bound_is_503(make_api: ApiFactory) -> None:
    async with make_api(API_MAX_IN_FLIGHT=1) as api:
        entered, release = asyncio.Event(), asyncio.Event()
        original = api.sink.deliver

        async def slow(delivery: Any) -> None:
            entered.set()
            await release.wait()
            await original(delivery)

        api.sink.deliver = slow  # type: ignore[method-assign]
        first = asyncio.create_task(api.client.post(POSTS, json=post(1), headers=AUTH))
        await asyncio.wait_for(entered.wait(), 5)
        second = await api.client.post(POSTS, json=post(2), headers=AUTH)
        assert second.status_code == 503
        assert second.json()["error"] == "overloaded"
        assert second.headers["Retry-After"] == "1"
        release.set()
        assert (await first).status_code == 202


async def test_sink_timeout_is_503(make_api: ApiFactory) -> None:
    async with make_api(API_SINK_TIMEOUT_S=0.05) as api:

        async def hang(_: Any) -> None:
            await asyncio.sleep(10)

        api.sink.deliver = hang  # type: ignore[method-assign]
        response = await api.client.post(POSTS, json=post(), headers=AUTH)
        assert response.status_code == 503


async def test_health_and_openapi(api: InProcessApi) -> None:
    assert (await api.client.get("/healthz")).json() == {
        "status": "ok",
        "sink": None,
        "component": None,
    }
    assert (await api.client.get("/readyz")).json() == {"status": "ready", "sink": "memory"}
    spec = (await api.client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/datasets/posts/records"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json"}
    assert "application/x-ndjson" in operation["requestBody"]["description"]
    assert {
        "202",
        "400",
        "401",
        "404",
        "409",
        "413",
        "415",
        "422",
        "429",
        "500",
        "503",
    } <= set(operation["responses"])
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert (await api.client.get("/docs")).status_code == 200


async def test_too_many_records_are_refused_before_the_body_is_parsed(
    api: InProcessApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """99,999 one-byte records (within the value limit) get 413 too_many_records with the JSON
    parser never called: the count runs on the bytes."""

    def no_parse(_: Any) -> Any:
        raise AssertionError("parsed a body with too many records")

    monkeypatch.setattr("tributary_api.body.orjson.loads", no_parse)
    body = b"[" + b",".join([b"1"] * 99_999) + b"]"
    response = await api.client.post(POSTS, content=body, headers={**JSON, **AUTH})
    assert response.status_code == 413
    assert response.json()["error"] == "too_many_records"
    assert api.nothing_written()


@pytest.mark.parametrize("body", [b"[]", b'{"records": []}'])
async def test_no_record_is_400_and_writes_nothing(api: InProcessApi, body: bytes) -> None:
    """An empty batch is a malformed request (the OpenAPI says minItems 1), not a 422: even with
    an Idempotency-Key no claim is written."""
    headers = {**JSON, **AUTH, "Idempotency-Key": "empty-batch"}
    response = await api.client.post(POSTS, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body"
    assert api.nothing_written()


@pytest.mark.parametrize("keyed", [True, False])
async def test_503_advice_fits_whether_the_producer_sent_an_idempotency_key(
    api: InProcessApi, keyed: bool
) -> None:
    """Only a producer that sent an Idempotency-Key is told to retry with the same one; one
    that sent none is told to send one, since its retry gets new ids."""
    api.sink.down = True
    headers = {**AUTH, "Idempotency-Key": "advice-1"} if keyed else AUTH
    response = await api.client.post(POSTS, json=[post(1)], headers=headers)
    assert response.status_code == 503
    message = response.json()["message"]
    if keyed:
        assert "Retry with the same Idempotency-Key" in message
    else:
        assert "same Idempotency-Key" not in message
        assert "send an Idempotency-Key" in message


async def test_a_dataset_the_key_may_not_write_looks_unknown(api: InProcessApi) -> None:
    """No 403/404 oracle: a key limited to some datasets gets the same answer for a registered
    dataset it may not write as for one that does not exist."""
    headers = {**JSON, "X-API-Key": POSTS_KEY}
    answers = []
    for dataset in ("events", "no-such-dataset"):
        response = await api.client.post(
            f"/v1/datasets/{dataset}/records", json={}, headers=headers
        )
        body = response.json()
        answers.append((response.status_code, body["error"], body["message"].replace(dataset, "D")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404
