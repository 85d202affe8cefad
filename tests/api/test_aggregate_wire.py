"""Over the wire: with API_KINESIS_AGGREGATE=true the API (uvicorn) puts KPL aggregates on
moto's Kinesis, each on the shard its records' keys map to, and a real consumer process lands
every record in raw exactly once, trusted (signed) and in order per partition key."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from tests.api.test_wire import SIGNING_KEY, StartApi, start_api  # noqa: F401 - the fixture
from tests.stream.test_wire import Fleet
from tributary.aws import AwsClients
from tributary.settings import AwsSettings
from tributary_api.aggregate import MAGIC, hash_key
from tributary_stack import samples
from tributary_stack.inspect import read_lines, wait_checkpointed
from tributary_stack.moto import MotoServer
from tributary_stream.aggregation import deaggregate


async def stream_records(lake: AwsSettings) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(shard, Kinesis record) of every record on the stream, from TRIM_HORIZON."""
    out = []
    async with AwsClients(lake) as clients:
        kinesis = await clients.kinesis()
        shards = (await kinesis.list_shards(StreamName=lake.stream_name))["Shards"]
        for shard in shards:
            iterator = (
                await kinesis.get_shard_iterator(
                    StreamName=lake.stream_name,
                    ShardId=shard["ShardId"],
                    ShardIteratorType="TRIM_HORIZON",
                )
            )["ShardIterator"]
            page = await kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            out += [(dict(shard), dict(r)) for r in page["Records"]]
    return out


def test_aggregated_records_land_in_raw_exactly_once(
    lake: AwsSettings,
    moto: MotoServer,
    start_api: StartApi,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    api = start_api(
        lake,
        moto.endpoint,
        API_KINESIS_AGGREGATE="true",
        API_KINESIS_AGGREGATE_MAX_BYTES="8192",  # several aggregates per shard per request
    )
    posts = samples.posts(300)
    for post in posts:
        post["userId"] = post["id"] % 9 + 1  # the partition key: 9 keys over 2 shards
    for start in (0, 100, 200):
        answer = api.client.post(
            "/v1/datasets/posts/records",
            content=orjson.dumps(posts[start : start + 100]),
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == 100

    on_stream = asyncio.run(stream_records(lake))
    assert 2 <= len(on_stream) < 300 / 5  # aggregates, not one record per entry
    order: dict[str, list[int]] = {}
    for shard, record in on_stream:
        assert record["Data"].startswith(MAGIC)
        read = deaggregate(record["Data"], record["PartitionKey"])
        assert read.error is None
        low = int(shard["HashKeyRange"]["StartingHashKey"])
        high = int(shard["HashKeyRange"]["EndingHashKey"])
        for key, data in read.records:
            assert low <= hash_key(key) <= high  # the shard its partition key maps to
            order.setdefault(key, []).append(orjson.loads(data)["data"]["id"])
    for key, ids in order.items():  # per partition key, the order it was sent in
        assert ids == [p["id"] for p in posts if str(p["userId"]) == key], key

    fleet = Fleet(lake, tmp_path, ENVELOPE_SIGNING_KEY=SIGNING_KEY)
    fleet.start()
    try:
        last: dict[str, int] = {}
        for shard, record in on_stream:
            sid = shard["ShardId"]
            last[sid] = max(last.get(sid, 0), int(record["SequenceNumber"]))
        asyncio.run(wait_checkpointed(lake, last, within=90))
    finally:
        fleet.stop()
    lines = [
        orjson.loads(line)
        for lines in asyncio.run(read_lines(lake, "raw/posts/")).values()
        for line in lines
    ]
    sent = {str(p["id"]): p for p in posts}
    assert Counter(line["id"] for line in lines) == Counter(list(sent))  # each once, no other
    for line in lines:
        assert line["source"] == "api:wire"  # trusted: signed inside the aggregate
        assert line["data"] == sent[line["id"]]
