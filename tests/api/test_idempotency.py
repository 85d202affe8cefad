"""Idempotency-Key: an identical retry gets the first answer, a reused key with other records
gets 409 and writes nothing — in any UTC hour, for the quarantine as for the sink."""

from __future__ import annotations

from typing import Any

import orjson

from tests.api.conftest import AUTH, InProcessApi
from tributary.batch import decode_ndjson_gz

POSTS = "/v1/datasets/posts/records"


def post(i: int, title: str = "t") -> dict[str, Any]:
    return {"userId": 1, "id": i, "title": title, "body": "b"}


def event(kind: str) -> dict[str, Any]:
    return {"type": kind}


async def test_identical_retry_gets_the_first_answer(api: InProcessApi) -> None:
    headers = {**AUTH, "Idempotency-Key": "same"}
    records = [event("a"), {"nope": 1}, event("b")]
    first = await api.client.post("/v1/datasets/events/records", json=records, headers=headers)
    api.clock.advance(60)
    again = await api.client.post("/v1/datasets/events/records", json=records, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    lines = [[orjson.loads(r.line) for r in d.records] for d in api.sink.deliveries]
    assert lines[0] == lines[1]  # the same envelopes, received_at included


async def test_reused_key_with_other_records_is_409_and_writes_nothing(
    api: InProcessApi,
) -> None:
    headers = {**AUTH, "Idempotency-Key": "reused"}
    first = await api.client.post(POSTS, json=[post(1), {"bad": 1}], headers=headers)
    assert first.status_code == 202
    written = dict(api.quarantine.objects)
    deliveries = len(api.sink.deliveries)
    for other in ([post(2), {"bad": 2}], [post(1, "changed"), {"bad": 1}], [post(1)]):
        reused = await api.client.post(POSTS, json=other, headers=headers)
        assert reused.status_code == 409, reused.text
        assert reused.json()["error"] == "idempotency_key_reused"
        assert "'reused'" in reused.json()["message"]
    assert api.quarantine.objects == written
    assert len(api.sink.deliveries) == deliveries


async def test_retry_in_a_later_utc_hour_finds_the_first_attempt(api: InProcessApi) -> None:
    headers = {**AUTH, "Idempotency-Key": "hourly"}
    records = [post(1), {"bad": 1}]
    api.sink.down = True  # the first attempt is refused at 03:04
    assert (await api.client.post(POSTS, json=records, headers=headers)).status_code == 503
    api.sink.down = False
    api.clock.advance(3 * 3600)  # the producer retries at 06:04
    retried = await api.client.post(POSTS, json=records, headers=headers)
    assert retried.status_code == 202
    (delivery,) = api.sink.deliveries
    assert delivery.received.hour == 3
    ((key, obj),) = api.quarantined().items()
    assert "/hour=03/" in key
    (line,) = decode_ndjson_gz(obj.body)
    assert orjson.loads(line)["received_at"] == "2026-01-02T03:04:05.000Z"
    # and a different body in that later hour is still a reuse
    other = await api.client.post(POSTS, json=[post(9)], headers=headers)
    assert other.status_code == 409


async def test_key_order_and_body_form_do_not_make_a_retry_different(api: InProcessApi) -> None:
    headers = {**AUTH, "Idempotency-Key": "forms"}
    record = post(1)
    first = await api.client.post(POSTS, json=[record], headers=headers)
    reordered = dict(reversed(list(record.items())))
    for body in (reordered, {"records": [record]}):
        again = await api.client.post(POSTS, json=body, headers=headers)
        assert again.status_code == 202
        assert again.json() == first.json()


async def test_requests_without_a_key_are_never_409(api: InProcessApi) -> None:
    for i in range(3):
        response = await api.client.post(POSTS, json=[post(i + 1)], headers=AUTH)
        assert response.status_code == 202
    assert not api.claims()


async def test_409_is_documented(api: InProcessApi) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    (operation, *_) = [
        op["post"] for path, op in spec["paths"].items() if path.startswith("/v1/datasets/")
    ]
    assert "idempotency_key_reused" in operation["responses"]["409"]["description"]
