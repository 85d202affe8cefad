from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from tests.stream.conftest import SIGNING_KEY, envelope
from tributary.batch import decode_ndjson_gz
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.testing import MemoryMetrics, MemoryRawWriter
from tributary_stream.consumer import Limits
from tributary_stream.lease import Checkpoint
from tributary_stream.route import Router
from tributary_stream.settings import StreamSettings
from tributary_stream.testing import MemoryLeaseStore, MemoryStream
from tributary_stream.worker import Worker, WorkerConfig


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAM_INITIAL_POSITION": "AT_TIMESTAMP"}, "STREAM_INITIAL_TIMESTAMP is needed"),
        (
            {"STREAM_INITIAL_TIMESTAMP": "2026-01-01T00:00:00Z"},
            "STREAM_INITIAL_TIMESTAMP is needed",
        ),
        ({"STREAM_INITIAL_POSITION": "SHARD_END"}, "must be TRIM_HORIZON, LATEST or AT_TIMESTAMP"),
    ],
)
def test_bad_start_positions_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        StreamSettings()


@pytest.mark.parametrize(("value", "on"), [(None, False), ("true", True), ("0", False)])
def test_flush_when_caught_up_reaches_the_consumer_limits_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool
) -> None:
    """The process builds its Limits with `Limits.from_settings` (__main__): the setting must
    arrive there, or it would silently do nothing."""
    if value is not None:
        monkeypatch.setenv("FLUSH_WHEN_CAUGHT_UP", value)
    monkeypatch.setenv("IDLE_FLUSH_S", "0.7")
    limits = Limits.from_settings(StreamSettings())
    assert limits.flush_when_caught_up is on
    assert limits.idle_flush_s == 0.7


def test_a_flush_when_caught_up_that_is_not_a_boolean_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLUSH_WHEN_CAUGHT_UP", "sometimes")
    with pytest.raises(ValidationError, match="FLUSH_WHEN_CAUGHT_UP"):
        StreamSettings()


async def test_at_timestamp_starts_from_that_arrival_time(registry: DatasetRegistry) -> None:
    stream = MemoryStream(1)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(10):
        stream.put(
            "shardId-000000000000",
            envelope("events", f"e{i}", {"type": "t"}),
            arrival=start + timedelta(minutes=i),
        )
    writer = MemoryRawWriter()
    worker = Worker(
        WorkerConfig(
            worker_id="w",
            limits=Limits(100, 10**6, 3600, 0.05),
            failover_time_s=1,
            shard_sync_s=0.2,
            idle_poll_s=0.01,
            tick_s=0.02,
            initial_position=Checkpoint.AT_TIMESTAMP,
            initial_timestamp=start + timedelta(minutes=6),
        ),
        MemoryLeaseStore(),
        stream,
        Router(registry, "kinesis:t", signing_key=SIGNING_KEY),
        writer,
        SystemClock(),
        MemoryMetrics(),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(10):
        while not writer.objects:  # noqa: ASYNC110 - polling a fake
            await asyncio.sleep(0.02)
    stop.set()
    await task
    ids = [line for obj in writer.objects.values() for line in decode_ndjson_gz(obj.body)]
    assert [line.split(b'"id":"')[1][:2] for line in ids] == [b"e6", b"e7", b"e8", b"e9"]
