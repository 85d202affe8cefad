"""The optional second prong, throttling and expired iterators."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.stream.conftest import SIGNING_KEY, Harness, envelope
from tributary.aws import AwsClients
from tributary.dataset import DatasetRegistry
from tributary.envelope import verify_envelope
from tributary.errors import ConfigError
from tributary.settings import AwsSettings
from tributary_stream.processing import DynamoDbItemSink, body_length, load_processor
from tributary_stream.testing import MemoryItemSink, MemoryStream

SHARD = "shardId-000000000000"


def post(i: int) -> bytes:
    return envelope("posts", str(i), {"userId": 1, "id": i, "title": "t", "body": "b" * i})


async def test_processed_items_are_durable_before_the_checkpoint(
    registry: DatasetRegistry,
) -> None:
    h = Harness(registry, MemoryStream(1))
    sink = MemoryItemSink()
    h.processing = (load_processor("tributary_stream.processing:body_length"), sink)
    expected = [post(i) for i in range(1, 40)]
    for data in expected:
        h.stream.put(SHARD, data)
    worker = h.start()
    await h.wait_for(lambda: len(sink.items) == 39 and sum(h.raw_lines().values()) == 39)
    await h.stop(worker)
    assert sink.items["posts#7"] == {"dataset": "posts", "id": "7", "body_length": 7}
    assert h.raw_lines() == Counter(verify_envelope(d, SIGNING_KEY) for d in expected)


def test_processor_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="not an importable 'module:function'"):
        load_processor("nowhere:nothing")
    assert body_length({"dataset": "d", "id": "1", "data": {"x": 1}}) is None


async def test_dynamodb_item_sink_upserts(lake: AwsSettings, clients: AwsClients) -> None:
    dynamodb = await clients.dynamodb()
    await dynamodb.create_table(
        TableName="items",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sink = DynamoDbItemSink(dynamodb, "items")
    items = [
        {"dataset": "posts", "id": str(i), "n": i, "tags": ["a"], "ok": True} for i in range(60)
    ]
    await sink.put_items(items)
    await sink.put_items(items[:10])  # a replay: same keys, no new items
    scan = await dynamodb.scan(TableName="items")
    assert scan["Count"] == 60
    stored = {i["pk"]["S"]: i for i in scan["Items"]}
    assert stored["posts#5"]["n"] == {"N": "5"}
    assert stored["posts#5"]["tags"] == {"L": [{"S": "a"}]}


async def test_throttling_and_expired_iterators_lose_nothing(registry: DatasetRegistry) -> None:
    h = Harness(registry, MemoryStream(1))
    expected = [post(i) for i in range(1, 30)]
    for data in expected[:15]:
        h.stream.put(SHARD, data)
    h.stream.throttle_next(3)
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 15)
    h.stream.expire_iterators = True
    for data in expected[15:]:
        h.stream.put(SHARD, data)
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 29)
    await h.stop(worker)
    assert h.raw_lines() == Counter(verify_envelope(d, SIGNING_KEY) for d in expected)
    assert h.metrics.total("GetRecordsThrottled", shard=SHARD) == 3
