"""The optional second prong, throttling and expired iterators."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.stream.conftest import Harness, envelope
from tributary.dataset import DatasetRegistry
from tributary.errors import ConfigError
from tributary_stream.processing import body_length, load_processor
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
    assert h.raw_lines() == Counter(expected)


def test_processor_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="not an importable 'module:function'"):
        load_processor("nowhere:nothing")
    assert body_length({"dataset": "d", "id": "1", "data": {"x": 1}}) is None


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
    assert h.raw_lines() == Counter(expected)
    assert h.metrics.total("GetRecordsThrottled", shard=SHARD) == 3
