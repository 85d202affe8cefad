"""Over the wire: the API (uvicorn) signs what it puts on Kinesis (moto), a consumer process
trusts only that; a direct producer's copy of an API envelope lands as a bare record."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from tests.api.test_wire import SIGNING_KEY, StartApi, start_api  # noqa: F401 - the fixture
from tests.stream.test_wire import Fleet
from tributary.aws import AwsClients
from tributary.settings import AwsSettings
from tributary_stack.inspect import read_lines, wait_consumed
from tributary_stack.moto import MotoServer


async def put_direct(lake: AwsSettings, data: bytes) -> None:
    async with AwsClients(lake) as clients:
        kinesis = await clients.kinesis()
        await kinesis.put_record(StreamName=lake.stream_name, Data=data, PartitionKey="forger")


def test_consumer_trusts_only_envelopes_the_api_signed(
    lake: AwsSettings,
    moto: MotoServer,
    start_api: StartApi,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    api = start_api(lake, moto.endpoint)
    accepted = api.post("events", [{"type": "signup"}], **{"Idempotency-Key": "trust-1"})
    assert accepted.status_code == 202
    (victim,) = accepted.json()["ids"]
    # A direct producer copies the API's envelope shape to claim the victim's id and a time.
    forged = {
        "v": 1,
        "dataset": "events",
        "id": victim,
        "source": "api:wire",
        "received_at": "2000-01-01T00:00:00.000Z",
        "data": {"type": "forged"},
    }
    asyncio.run(put_direct(lake, orjson.dumps(forged)))
    fleet = Fleet(lake, tmp_path, ENVELOPE_SIGNING_KEY=SIGNING_KEY, STREAM_DEFAULT_DATASET="events")
    fleet.start()
    try:
        asyncio.run(wait_consumed(lake, within=60))
    finally:
        fleet.stop()
    lines = [
        orjson.loads(line)
        for lines in asyncio.run(read_lines(lake, "raw/events/")).values()
        for line in lines
    ]
    by_source = {line["source"]: line for line in lines}
    assert set(by_source) == {"api:wire", f"kinesis:{lake.stream_name}"}
    trusted, bare = by_source["api:wire"], by_source[f"kinesis:{lake.stream_name}"]
    assert trusted["id"] == victim
    assert "sig" not in trusted  # raw lines never carry the signature
    assert trusted["arrived_at"] >= trusted["received_at"]  # and the consumer says when it saw it
    assert bare["id"] != victim  # the forger suppresses nothing at dedupe
    assert bare["received_at"] != "2000-01-01T00:00:00.000Z"  # the arrival Kinesis gave it
    assert bare["data"] == forged
