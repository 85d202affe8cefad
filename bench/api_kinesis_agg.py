"""Kinesis writes of the API's sink per million 300-byte records: KPL aggregation
(API_KINESIS_AGGREGATE) against today's one record per PutRecords entry, in the same run.

The real `KinesisSink` (signing excluded: the lines are built already sealed) delivers requests
of N records each to a counting Kinesis client with 4 evenly split shards (ListShards). Counted
from what the sink sends: PutRecords calls, entries, and PUT payload units (each entry's data +
partition key, in 25 KB units rounded up, as Kinesis bills them), and the sink's CPU time per
record. Partition keys: 1,000 producers (the posts dataset's `userId`). That the stream consumer
reads the aggregates back, exactly once, is tests/api/test_aggregate_wire.py (moto + the real
consumer).
Run: `python bench/api_kinesis_agg.py [--records 1000000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from report import Report, Table, save  # noqa: E402
from tributary.table import render  # noqa: E402
from tributary.testing import MemoryMetrics  # noqa: E402
from tributary_api.aggregate import DEFAULT_MAX_AGGREGATE_BYTES, payload_units  # noqa: E402
from tributary_api.sink import Delivery, KinesisSink, OutRecord  # noqa: E402

RECORD_BYTES = 300
SHARDS = 4
KEYS = 1000


class CountingKinesis:
    """ListShards (SHARDS even ranges) and PutRecords that accepts everything and counts."""

    def __init__(self) -> None:
        self.calls = self.entries = self.units = self.bytes = 0

    async def list_shards(self, **_: Any) -> dict[str, Any]:
        step = 2**128 // SHARDS
        return {
            "Shards": [
                {
                    "ShardId": f"shardId-{i:012d}",
                    "HashKeyRange": {
                        "StartingHashKey": str(i * step),
                        "EndingHashKey": str(2**128 - 1 if i == SHARDS - 1 else (i + 1) * step - 1),
                    },
                    "SequenceNumberRange": {"StartingSequenceNumber": "1"},
                }
                for i in range(SHARDS)
            ]
        }

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        self.entries += len(Records)
        for entry in Records:
            weight = len(entry["Data"]) + len(entry["PartitionKey"].encode())
            self.units += payload_units(weight)
            self.bytes += weight
        return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1"}] * len(Records)}


def requests(total: int, batch: int) -> list[list[OutRecord]]:
    """`total` records of RECORD_BYTES (an envelope-like JSON line) in requests of `batch`."""
    out = []
    for start in range(0, total, batch):
        chunk = []
        for i in range(start, min(total, start + batch)):
            head = b'{"v":1,"dataset":"posts","id":"%d","data":{"userId":%d,"body":"' % (
                i,
                i % KEYS + 1,
            )
            line = head + b"x" * (RECORD_BYTES - len(head) - 3) + b'"}}'
            chunk.append(OutRecord(str(i), str(i % KEYS + 1), line))
        out.append(chunk)
    return out


async def run(
    batches: list[list[OutRecord]], aggregate: int | None
) -> tuple[CountingKinesis, float]:
    kinesis = CountingKinesis()
    sink = KinesisSink(
        kinesis,  # type: ignore[arg-type]
        "bench",
        MemoryMetrics(),
        b"k" * 32,
        aggregate_max_bytes=aggregate,
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.process_time()
    for n, records in enumerate(batches):
        await sink.deliver(Delivery("posts", str(n), at, records))
    return kinesis, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batches", default="100,500")
    parser.add_argument("--rounds", type=int, default=3, help="CPU time: median of rounds")
    args = parser.parse_args()
    per_million = 1_000_000 / args.records
    headers = [
        "mode",
        "records per request",
        "PutRecords calls / 1M",
        "entries / 1M",
        "PUT payload units / 1M",
        "bytes sent / record",
        "sink CPU µs / record",
        "units vs one per entry",
    ]
    rows: list[list[object]] = []
    headline: list[list[object]] = []
    for batch in [int(b) for b in args.batches.split(",")]:
        data = requests(args.records, batch)
        cpu: dict[str, list[float]] = {"plain": [], "aggregated": []}
        counted: dict[str, CountingKinesis] = {}
        for _ in range(args.rounds):  # interleaved
            for mode, limit in (("plain", None), ("aggregated", DEFAULT_MAX_AGGREGATE_BYTES)):
                kinesis, seconds = asyncio.run(run(data, limit))
                cpu[mode].append(seconds)
                counted[mode] = kinesis
        plain_units = counted["plain"].units
        for mode in ("plain", "aggregated"):
            k = counted[mode]
            rows.append(
                [
                    "one record per entry"
                    if mode == "plain"
                    else f"KPL aggregates ≤ {DEFAULT_MAX_AGGREGATE_BYTES:,} B",
                    batch,
                    f"{k.calls * per_million:,.0f}",
                    f"{k.entries * per_million:,.0f}",
                    f"{k.units * per_million:,.0f}",
                    f"{k.bytes / args.records:,.1f}",
                    f"{statistics.median(cpu[mode]) / args.records * 1e6:.2f}",
                    "1.00 (baseline)" if mode == "plain" else f"{k.units / plain_units:.3f}",
                ]
            )
        agg = counted["aggregated"]
        headline.append(
            [
                "HTTP API",
                f"Kinesis PUT payload units per 1M {RECORD_BYTES}-byte records, "
                f"{batch}-record requests, aggregated (PutRecords calls beside)",
                f"{agg.units * per_million:,.0f} ({agg.calls * per_million:,.0f} calls)",
                f"{plain_units * per_million:,.0f} ({counted['plain'].calls * per_million:,.0f}"
                " calls, one record per entry)",
                f"{agg.units / plain_units:.3f}",
                "fewer (stretch)",
                "yes" if agg.units < plain_units else "**no**",
            ]
        )
    title = (
        f"Kinesis writes per 1M {RECORD_BYTES}-byte records ({args.records:,} measured), "
        f"{SHARDS} shards, {KEYS:,} partition keys; CPU median of {args.rounds} interleaved rounds"
    )
    print(render(headers, rows, title="\n" + title))
    save(
        Report(
            name="api_kinesis_agg",
            setup=(
                "The API's real KinesisSink delivering requests to a counting Kinesis client "
                f"(ListShards: {SHARDS} even ranges; PutRecords accepts all); counted from the "
                "entries the sink sends. Payload units: each entry's data + partition key in "
                "25 KB units (25,600 bytes here), rounded up."
            ),
            tables=[Table(title, headers, rows)],
            headline=headline,
            notes=[
                "Aggregation is opt-in (API_KINESIS_AGGREGATE=true, "
                "API_KINESIS_AGGREGATE_MAX_BYTES, default the KPL's 51,200): records are "
                "grouped by the shard their partition key's MD5 maps to, each aggregate carries "
                "its first key and that key's hash as ExplicitHashKey, and a call carries at "
                "most one aggregate per shard, so a request of N records needs at least as many "
                "calls as its largest shard has aggregates. Calls per request stay one for "
                "these request sizes either way: the saving is in entries and payload units. "
                "tests/api/test_aggregate_wire.py shows the consumer landing them once each.",
            ],
        )
    )


if __name__ == "__main__":
    main()
