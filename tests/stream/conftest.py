"""In-memory stream-consumer harness: the real Worker on MemoryStream, MemoryLeaseStore and
MemoryRawWriter, with timings shrunk so failover takes a fraction of a second."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from tributary.aws import AwsClients
from tributary.batch import decode_ndjson_gz
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.envelope import sign_envelope, verify_envelope
from tributary.testing import MemoryMetrics, MemoryRawWriter
from tributary_stream.consumer import Limits
from tributary_stream.processing import DynamoDbItemSink
from tributary_stream.route import Router
from tributary_stream.testing import MemoryFleetStore, MemoryLeaseStore, MemoryStream
from tributary_stream.worker import Worker, WorkerConfig

FAILOVER = 0.6


@pytest.fixture
async def items_sink(clients: AwsClients) -> DynamoDbItemSink:
    """A DynamoDB item sink on a fresh table of the session's moto."""
    dynamodb = await clients.dynamodb()
    table = f"items-{uuid.uuid4().hex[:8]}"
    await dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return DynamoDbItemSink(dynamodb, table)


SIGNING_KEY = b"stream-test-envelope-signing-key-0123"


def envelope(dataset: str, record_id: str, data: dict[str, object]) -> bytes:
    """An envelope as the API puts it on the stream: signed."""
    return sign_envelope(unsigned_envelope(dataset, record_id, data), SIGNING_KEY)


def landed(lines: list[bytes]) -> Counter[bytes]:
    """What raw holds for records put on the stream: signed envelopes unsigned, others as is."""
    return Counter(verify_envelope(line, SIGNING_KEY) or line for line in lines)


_ARRIVED = re.compile(rb',"arrived_at":"[^"]*"\}$')


def without_arrival(line: bytes) -> bytes:
    """A landed API envelope without the `arrived_at` the consumer adds: the API's line."""
    return _ARRIVED.sub(b"}", line)


def unsigned_envelope(dataset: str, record_id: str, data: dict[str, object]) -> bytes:
    """The envelope as it lands in raw."""
    return orjson.dumps(
        {
            "v": 1,
            "dataset": dataset,
            "id": record_id,
            "source": "test",
            "received_at": "2026-01-01T00:00:00.000Z",
            "data": data,
        }
    )


@dataclass
class Harness:
    registry: DatasetRegistry
    stream: MemoryStream
    store: MemoryLeaseStore = field(default_factory=MemoryLeaseStore)
    fleet: MemoryFleetStore = field(default_factory=MemoryFleetStore)
    writer: MemoryRawWriter = field(default_factory=MemoryRawWriter)
    metrics: MemoryMetrics = field(default_factory=MemoryMetrics)
    max_records: int = 50
    max_age_s: float = 3600
    processing: Any = None
    live: dict[Worker, tuple[asyncio.Task[None], asyncio.Event]] = field(default_factory=dict)
    count: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # WorkerConfig overrides

    def start(self, name: str | None = None) -> Worker:
        self.count += 1
        worker = Worker(
            WorkerConfig(
                worker_id=name or f"w{self.count}",
                limits=Limits(self.max_records, 1_000_000, self.max_age_s, 0.05),
                failover_time_s=FAILOVER,
                **{
                    "shard_sync_s": 0.2,
                    "idle_poll_s": 0.01,
                    "tick_s": 0.02,
                    "get_records_limit": 37,
                    "shutdown_timeout_s": 5,
                    "restart_backoff_s": 0.05,
                    "max_backoff_s": 0.3,
                    "poison_min_s": 0.0,
                    "assignment": "leader",
                    **self.config,
                },
            ),
            self.store,
            self.stream,
            Router(self.registry, "kinesis:test", "events", signing_key=SIGNING_KEY),
            self.writer,
            SystemClock(),
            self.metrics,
            self.processing,
            self.fleet,
        )
        stop = asyncio.Event()
        self.live[worker] = (asyncio.create_task(worker.run(stop)), stop)
        return worker

    async def stop(self, worker: Worker) -> None:
        """Graceful: drain, checkpoint, release."""
        task, stop = self.live.pop(worker)
        stop.set()
        await asyncio.wait_for(task, 10)

    async def kill(self, worker: Worker) -> None:
        """Like kill -9: every task of the worker dies where it is, nothing is flushed."""
        task, _ = self.live.pop(worker)
        tasks = [task, *(r.task for r in worker.running.values())]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def stop_all(self) -> None:
        for worker in list(self.live):
            await self.stop(worker)

    def raw_lines(self, zone: str = "raw") -> Counter[bytes]:
        """Landed lines, API envelopes without the consumer's `arrived_at`."""
        return Counter(
            without_arrival(line)
            for key, obj in self.writer.objects.items()
            if key.startswith(zone)
            for line in decode_ndjson_gz(obj.body)
        )

    async def wait_for(self, done: Callable[[], bool], within: float = 20) -> None:
        deadline = time.monotonic() + within
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached")
            await asyncio.sleep(0.02)
