"""Read back what landed: every record on a stream, every line or Parquet table under a lake
prefix."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from tributary.aws import AwsClients
from tributary.batch import decode_ndjson_gz
from tributary.envelope import Envelope
from tributary.settings import AwsSettings
from tributary_stream.lease_table import DynamoDbLeaseStore


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A record read back from Kinesis, with where it sat."""

    shard_id: str
    sequence_number: str
    partition_key: str
    envelope: Envelope


async def read_stream(settings: AwsSettings) -> list[StreamRecord]:
    """Every record on every shard of `settings.stream_name`, from TRIM_HORIZON, in shard order."""
    out: list[StreamRecord] = []
    async with AwsClients(settings) as clients:
        kinesis = await clients.kinesis()
        stream = settings.stream_name
        shards = []
        async for listing in kinesis.get_paginator("list_shards").paginate(StreamName=stream):
            shards += listing["Shards"]
        for shard in shards:
            iterator: str | None = (
                await kinesis.get_shard_iterator(
                    StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            while iterator:
                page = await kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                out += [
                    StreamRecord(
                        shard["ShardId"],
                        r["SequenceNumber"],
                        r["PartitionKey"],
                        Envelope.from_json(r["Data"]),
                    )
                    for r in page["Records"]
                ]
                if not page["Records"] or not page.get("MillisBehindLatest", 1):
                    break
                iterator = page.get("NextShardIterator")
    return out


async def read_objects(settings: AwsSettings, prefix: str) -> dict[str, bytes]:
    """The bodies of every object under `prefix` in the lake bucket, by key."""
    out: dict[str, bytes] = {}
    async with AwsClients(settings) as clients:
        s3 = await clients.s3()
        bucket = settings.lake_bucket
        async for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", []):
                body = await (await s3.get_object(Bucket=bucket, Key=obj["Key"]))["Body"].read()
                out[obj["Key"]] = body
    return out


async def read_lines(settings: AwsSettings, prefix: str) -> dict[str, list[bytes]]:
    """The NDJSON lines of every gzip object under `prefix` in the lake bucket, by key."""
    objects = await read_objects(settings, prefix)
    return {key: decode_ndjson_gz(body) for key, body in objects.items()}


async def read_parquet(settings: AwsSettings, prefix: str) -> dict[str, pa.Table]:
    """Every Parquet file under `prefix` in the lake bucket as a table, by key."""
    objects = await read_objects(settings, prefix)
    return {key: pq.read_table(io.BytesIO(body)) for key, body in objects.items()}


async def wait_consumed(settings: AwsSettings, within: float) -> list[StreamRecord]:
    """Every record on the stream now, returned once the consumers' checkpoints cover them."""
    records = await read_stream(settings)
    last: dict[str, int] = {}
    for record in records:
        last[record.shard_id] = max(last.get(record.shard_id, 0), int(record.sequence_number))
    await wait_checkpointed(settings, last, within)
    return records


async def wait_checkpointed(
    settings: AwsSettings, last: Mapping[str, int | str], within: float
) -> None:
    """Until every shard's lease checkpoint is at or past `last[shard]` (sequence numbers)."""
    deadline = time.monotonic() + within
    async with AwsClients(settings) as clients:
        store = DynamoDbLeaseStore(await clients.dynamodb(), settings.lease_table)
        while True:
            leases = {lease.key: lease for lease in await store.list_leases()}
            if all(
                shard in leases
                and leases[shard].checkpoint.isdigit()
                and int(leases[shard].checkpoint) >= int(seq)
                for shard, seq in last.items()
            ):
                return
            if time.monotonic() > deadline:
                state = {k: v.checkpoint for k, v in leases.items()}
                raise TimeoutError(f"the consumer did not catch up within {within}s: {state}")
            await asyncio.sleep(0.05)
