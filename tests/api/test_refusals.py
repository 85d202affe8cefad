"""Refusals that must not mislead: configuration faults are 500 (not "retry"), a refused request
leaves no quarantine object behind, and unauthenticated or narrow keys learn nothing extra."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.api.conftest import AUTH, POSTS_KEY, ApiFactory, InProcessApi
from tributary.errors import PermanentError

POSTS = "/v1/datasets/posts/records"


def post(i: int) -> dict[str, Any]:
    return {"userId": 1, "id": i, "title": "t", "body": "b"}


async def test_a_permanent_sink_error_is_500_with_a_request_id_and_logged(
    api: InProcessApi, caplog: pytest.LogCaptureFixture
) -> None:
    async def refuse(_: Any) -> None:
        raise PermanentError("put refused (AccessDeniedException); check the task's IAM")

    api.sink.deliver = refuse  # type: ignore[method-assign]
    headers = {**AUTH, "Idempotency-Key": "cfg-1"}
    with caplog.at_level(logging.ERROR, logger="tributary_api"):
        response = await api.client.post(POSTS, json=[post(1)], headers=headers)
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["error"] == "internal_error"
    assert body["request_id"] == "cfg-1"
    assert "Retry-After" not in response.headers
    assert "AccessDenied" not in body["message"]  # the cause is for the operator's log
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "AccessDeniedException" in logged.__dict__["error"]
    assert logged.__dict__["request_id"] == "cfg-1"


async def test_sink_outage_with_a_mixed_batch_writes_no_quarantine_object(
    api: InProcessApi,
) -> None:
    api.sink.down = True
    records = [post(1), {"userId": "x"}]
    refused = await api.client.post(POSTS, json=records, headers=AUTH)
    assert refused.status_code == 503
    assert not api.quarantined()
    api.sink.down = False
    accepted = await api.client.post(POSTS, json=records, headers=AUTH)
    assert accepted.status_code == 202
    assert len(api.quarantined()) == 1


async def test_readyz_names_the_component_and_nothing_else(
    api: InProcessApi, caplog: pytest.LogCaptureFixture
) -> None:
    async def leaky_ping() -> None:
        raise PermanentError("head bucket lake-123456789012 refused (AccessDenied)")

    api.quarantine.ping = leaky_ping  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="tributary_api"):
        response = await api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "sink": "memory", "component": "quarantine"}
    assert "123456789012" not in response.text
    assert any("123456789012" in r.__dict__.get("error", "") for r in caplog.records)


async def test_unknown_dataset_lists_only_what_the_key_may_write(make_api: ApiFactory) -> None:
    async with make_api() as api:
        narrow = await api.client.post(
            "/v1/datasets/nope/records", json=post(1), headers={"X-API-Key": POSTS_KEY}
        )
        wide = await api.client.post("/v1/datasets/nope/records", json=post(1), headers=AUTH)
    assert narrow.status_code == wide.status_code == 404
    assert narrow.json()["message"].endswith("it may write: ['posts']")
    assert "events" not in narrow.json()["message"]
    assert "'events'" in wide.json()["message"]
