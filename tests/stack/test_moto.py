"""The embedded AWS keeps every acknowledged Kinesis record when PutRecords calls overlap (moto
alone numbers them max + 1 without a lock and overwrites some; see fix_moto_kinesis)."""

from __future__ import annotations

import asyncio

from tests.conftest import lake_settings
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.envelope import encode_envelope
from tributary_stack.inspect import read_stream
from tributary_stack.moto import MotoServer

AT = "2026-01-01T00:00:00.000000Z"


async def test_concurrent_put_records_keep_every_acknowledged_record(moto: MotoServer) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    acked: list[str] = []
    async with AwsClients(lake) as clients:
        kinesis = await clients.kinesis()

        async def put(call: int) -> None:
            entries = [
                {"Data": encode_envelope("events", f"{call}-{i}", "t", AT, {}), "PartitionKey": "k"}
                for i in range(100)
            ]
            answer = await kinesis.put_records(StreamName=lake.stream_name, Records=entries)
            assert answer["FailedRecordCount"] == 0
            acked.extend(r["SequenceNumber"] for r in answer["Records"])

        await asyncio.gather(*(put(call) for call in range(40)))
    assert len(set(acked)) == len(acked) == 4_000
    assert {r.sequence_number for r in await read_stream(lake)} == set(acked)
