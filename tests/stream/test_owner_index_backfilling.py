"""The leaseOwner GSI still backfilling (the deploy that adds it to an older table) is a
transient state: a leader-mode worker logs that it waits for the index, backs off and starts
consuming once the index is ACTIVE; only a missing index stops it (ConfigError, exit 2).
DynamoDB's two refusals are classified by code and message on a stubbed client."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.stream.conftest import Harness
from tributary.dataset import DatasetRegistry
from tributary.errors import ConfigError, TransientError
from tributary_stream.lease_table import DynamoDbLeaseStore
from tributary_stream.testing import MemoryLeaseStore, MemoryStream

BACKFILLING = "Cannot read from backfilling global secondary index: leaseOwner-index"
MISSING = "The table does not have the specified index: leaseOwner-index"


class RefusingDb:
    """A DynamoDB client whose every Query is refused with `code` and `message`."""

    def __init__(self, code: str, message: str) -> None:
        self.error = {"Error": {"Code": code, "Message": message}}

    async def query(self, **_: Any) -> dict[str, Any]:
        raise ClientError(self.error, "Query")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "message", "error"),
    [
        ("ValidationException", BACKFILLING, TransientError),
        ("ValidationException", MISSING, ConfigError),
        ("ResourceNotFoundException", "Invalid index: leaseOwner-index", ConfigError),
    ],
)
async def test_dynamodb_refusals_of_the_owner_index_are_classified(
    code: str, message: str, error: type[Exception]
) -> None:
    store = DynamoDbLeaseStore(RefusingDb(code, message), "leases")  # type: ignore[arg-type]
    with pytest.raises(error) as raised:
        await store.list_owned("w1")
    if error is TransientError:
        assert "waiting for leaseOwner-index to become ACTIVE" in str(raised.value)
    else:
        assert "no usable leaseOwner-index GSI" in str(raised.value)


async def test_the_memory_store_answers_a_backfilling_index_as_dynamodb_does() -> None:
    store = MemoryLeaseStore(owner_index="backfilling")
    with pytest.raises(TransientError, match="waiting for leaseOwner-index to become ACTIVE"):
        await store.list_owned("w1")
    store.owner_index = True  # ACTIVE
    assert await store.list_owned("w1") == []


async def test_a_worker_waits_for_a_backfilling_index_then_consumes(
    registry: DatasetRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryLeaseStore(owner_index="backfilling")
    h = Harness(registry, MemoryStream(2), store=store)
    caplog.set_level(logging.WARNING)
    worker = h.start()
    task, _ = h.live[worker]
    try:
        await h.wait_for(lambda: h.metrics.total("CoordinationFailures") >= 2, within=10)
        assert not task.done()  # backing off, not exited
        errors = [str(getattr(record, "error", "")) for record in caplog.records]
        assert any("waiting for leaseOwner-index to become ACTIVE" in e for e in errors)
        assert not worker.running  # nothing consumed before the index answers
        store.owner_index = True
        await h.wait_for(lambda: len(worker.running) == 2, within=10)
    finally:
        await h.stop_all()


async def test_a_worker_on_a_missing_index_stops_with_a_config_error(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(1), store=MemoryLeaseStore(owner_index=False))
    worker = h.start()
    task, _ = h.live.pop(worker)
    with pytest.raises(ConfigError, match="no usable leaseOwner-index GSI"):
        await asyncio.wait_for(task, 10)
