"""Versions of one item over the wire: POSTed to the API (uvicorn) and put on moto's Kinesis by
a direct producer, landed by consumer processes, curated by the job's command line. Each
version is kept once, a true retry of a version is still a duplicate."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.api.test_wire import SIGNING_KEY, StartApi, start_api  # noqa: F401 - the fixture
from tests.conftest import DATASETS_CONFIG
from tests.curate.test_wire import cli
from tests.stream.test_wire import Fleet
from tributary.aws import AwsClients
from tributary.settings import AwsSettings
from tributary_stack.inspect import read_lines, read_parquet, read_stream, wait_checkpointed
from tributary_stack.moto import MotoServer


async def put_bare(lake: AwsSettings, data: bytes) -> tuple[str, int]:
    """PutRecord as a direct producer does; (shard, sequence number)."""
    async with AwsClients(lake) as clients:
        kinesis = await clients.kinesis()
        put = await kinesis.put_record(StreamName=lake.stream_name, Data=data, PartitionKey="7")
    return put["ShardId"], int(put["SequenceNumber"])


def item(version: int, at: str) -> dict[str, object]:
    return {"id": 7, "name": f"widget v{version}", "price": 1.5 * version, "updated_at": at}


V1, V2, V3 = "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z", "2026-03-01T12:00:00.5Z"


@pytest.mark.timeout(600)
def test_every_version_once_through_api_stream_and_curate(
    lake: AwsSettings,
    moto: MotoServer,
    start_api: StartApi,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    api = start_api(lake, moto.endpoint)
    three = [item(1, V1), item(2, V2), item(3, "2026-03-01T12:00:00.500Z")]
    first = api.post("items", three)
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == 3  # three versions of one item in one request all count
    assert first.json()["ids"] == [f"7@{V1}", f"7@{V2}", f"7@{V3}"]
    again = api.post("items", three)  # a true retry (no Idempotency-Key): the same ids
    assert again.json()["ids"] == first.json()["ids"]
    keyed = api.post("items", [item(4, "2026-03-01T13:00:00Z")], **{"Idempotency-Key": "v4"})
    assert (
        api.post("items", [item(4, "2026-03-01T13:00:00Z")], **{"Idempotency-Key": "v4"}).json()[
            "ids"
        ]
        == keyed.json()["ids"]
        == ["7@2026-03-01T13:00:00Z"]
    )
    # A direct producer's bare records: version 2 again, spelled with an offset (a duplicate),
    # and a fifth version (new).
    last: dict[str, int] = {}
    for record in asyncio.run(read_stream(lake)):  # the API's envelopes
        last[record.shard_id] = max(last.get(record.shard_id, 0), int(record.sequence_number))
    for bare in (item(2, "2026-03-01T13:00:00+02:00"), item(5, "2026-03-01T14:00:00+00:00")):
        shard, sequence = asyncio.run(put_bare(lake, orjson.dumps(bare)))
        last[shard] = max(last.get(shard, 0), sequence)
    fleet = Fleet(lake, tmp_path, ENVELOPE_SIGNING_KEY=SIGNING_KEY, STREAM_DEFAULT_DATASET="items")
    fleet.start()
    try:
        asyncio.run(wait_checkpointed(lake, last, within=90))
    finally:
        fleet.stop()
    landed = Counter(
        orjson.loads(line)["id"]
        for lines in asyncio.run(read_lines(lake, "raw/items/")).values()
        for line in lines
    )
    versions = [V1, V2, V3, "2026-03-01T13:00:00Z", "2026-03-01T14:00:00Z"]
    assert landed == Counter(
        {f"7@{V1}": 2, f"7@{V2}": 3, f"7@{V3}": 2, f"7@{versions[3]}": 2, f"7@{versions[4]}": 1}
    )
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "LAKE_BUCKET": lake.lake_bucket,
        "GLUE_DATABASE": lake.glue_database,
        "DATASETS_CONFIG": str(DATASETS_CONFIG),
        "CURATE_WORK_DIR": str(tmp_path / "work"),
        "CURATE_QUERY_CACHE": str(tmp_path / "cache"),
        "LOG_LEVEL": "WARNING",
    }
    run = cli(env, "run", "--dataset", "items")
    assert run.returncode == 0, run.stderr
    # dataset run raw lines curated duplicates …
    assert run.stdout.splitlines()[2].split()[3:6] == ["10", "5", "5"]
    tables = asyncio.run(read_parquet(lake, "curated/items/"))
    rows = [row for table in tables.values() for row in table.to_pylist()]
    assert sorted(r["_id"] for r in rows) == sorted(f"7@{v}" for v in versions)
    assert sorted(r["name"] for r in rows) == [f"widget v{n}" for n in range(1, 6)]
    rerun = cli(env, "run", "--dataset", "items")  # nothing new: still five rows
    assert rerun.returncode == 0, rerun.stderr
    assert len(asyncio.run(read_parquet(lake, "curated/items/"))) == len(tables)
