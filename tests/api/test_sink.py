from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary.envelope import verify_envelope
from tributary.errors import PermanentError, RetriesExhaustedError
from tributary.retry import RetryPolicy
from tributary.testing import MemoryMetrics, MemoryRawWriter
from tributary_api.idempotency import IdempotencyConflictError
from tributary_api.sink import (
    PUT_RECORDS_MAX_BYTES,
    Delivery,
    KinesisSink,
    OutRecord,
    S3Sink,
    put_records_chunks,
)

SIGNING_KEY = b"s" * 32


class FakeKinesis:
    """PutRecords that fails the entries a script names, like Kinesis's partial failures."""

    def __init__(self, fail_plan: list[set[int]] | None = None) -> None:
        self.fail_plan = fail_plan or []
        self.calls: list[list[bytes]] = []
        self.stored: list[bytes] = []

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        fail = self.fail_plan.pop(0) if self.fail_plan else set()
        self.calls.append([r["Data"] for r in Records])
        results: list[dict[str, Any]] = []
        for i, entry in enumerate(Records):
            if i in fail:
                results.append(
                    {
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": "slow down",
                    }
                )
            else:
                self.stored.append(entry["Data"])
                results.append({"SequenceNumber": str(len(self.stored)), "ShardId": "s-0"})
        return {"FailedRecordCount": len(fail), "Records": results}


async def no_sleep(_: float) -> None:
    return None


def delivery(n: int, seal: Any = bytes) -> Delivery:
    """`n` records, their lines sealed as the ingestor seals them for the sink."""
    records = [OutRecord(str(i), "pk", seal(f'{{"i":{i}}}'.encode())) for i in range(n)]
    return Delivery("posts", "b1", datetime(2026, 1, 1, tzinfo=UTC), records)


async def test_only_failed_entries_are_retried() -> None:
    kinesis = FakeKinesis([{1, 3}, {0}])
    metrics = MemoryMetrics()
    sink = KinesisSink(kinesis, "s", metrics, SIGNING_KEY, RetryPolicy(max_attempts=5), no_sleep)  # type: ignore[arg-type]
    await sink.deliver(delivery(5, sink.seal))
    assert [len(c) for c in kinesis.calls] == [5, 2, 1]
    assert [verify_envelope(d, SIGNING_KEY) for d in kinesis.calls[1]] == [b'{"i":1}', b'{"i":3}']
    assert sorted(verify_envelope(d, SIGNING_KEY) for d in kinesis.stored) == sorted(
        f'{{"i":{i}}}'.encode() for i in range(5)
    )
    assert metrics.total("PutRecordsEntriesRetried", dataset="posts") == 3


async def test_persistent_partial_failure_is_not_acknowledged() -> None:
    kinesis = FakeKinesis([{0}] * 10)
    sink = KinesisSink(
        kinesis, "s", MemoryMetrics(), SIGNING_KEY, RetryPolicy(max_attempts=3), no_sleep
    )  # type: ignore[arg-type]
    with pytest.raises(RetriesExhaustedError, match="did not accept 1 of 1 records"):
        await sink.deliver(delivery(2))


@given(st.lists(st.integers(1, 200_000), max_size=1200))
def test_chunks_respect_put_records_limits(sizes: list[int]) -> None:
    records = [OutRecord(str(i), "k", b"x" * size) for i, size in enumerate(sizes)]
    chunks = list(put_records_chunks(records))
    assert [r for c in chunks for r in c] == records
    for chunk in chunks:
        assert 1 <= len(chunk) <= 500
        assert sum(len(r.line) + 1 for r in chunk) <= PUT_RECORDS_MAX_BYTES


async def test_s3_sink_writes_one_create_only_object_per_request() -> None:
    writer = MemoryRawWriter()
    sink = S3Sink(writer)
    await sink.deliver(delivery(3))
    await sink.deliver(delivery(3))  # a retry: same batch id, same key
    ((key, obj),) = writer.objects.items()
    assert key == "raw/posts/year=2026/month=01/day=01/hour=00/api-b1.ndjson.gz"
    assert (obj.record_count, obj.first, obj.last) == (3, "0", "2")


async def test_s3_sink_refusal_propagates() -> None:
    class Refusing(MemoryRawWriter):
        async def put(self, obj: Any) -> Any:
            raise PermanentError("AccessDenied")

    with pytest.raises(PermanentError):
        await S3Sink(Refusing()).deliver(delivery(1))


async def test_s3_sink_refuses_an_existing_object_of_other_records() -> None:
    writer = MemoryRawWriter()
    sink = S3Sink(writer)
    first = delivery(3)
    await sink.deliver(replace(first, digest="a" * 64))
    await sink.deliver(replace(first, digest="a" * 64))  # a true retry
    with pytest.raises(IdempotencyConflictError):
        await sink.deliver(replace(delivery(2), digest="b" * 64))
    ((_, obj),) = writer.objects.items()
    assert obj.record_count == 3
    assert obj.metadata()["content-sha256"] == "a" * 64
