"""`status` over the embedded AWS: the tables a person on call reads, from the real stores."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from tests.conftest import DATASETS_CONFIG, lake_settings
from tests.curate.lake import envelope, land, post
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.s3_writer import S3RawWriter
from tributary.settings import CommonSettings
from tributary_curate.bookmark import S3BookmarkStore
from tributary_importer.state import SourceState
from tributary_importer.state_blob import S3StateBlobs
from tributary_importer.state_dynamodb import DynamoDbStateStore
from tributary_stack.moto import MotoServer
from tributary_stack.status import status
from tributary_stream.lease import Checkpoint, Lease
from tributary_stream.lease_table import DynamoDbLeaseStore


def line_of(text: str, start: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.startswith(start))


async def test_status_tables(moto: MotoServer) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    settings = CommonSettings.model_validate(
        {
            "AWS_ENDPOINT_URL": moto.endpoint,
            "LAKE_BUCKET": lake.lake_bucket,
            "STREAM_NAME": lake.stream_name,
            "LEASE_TABLE": lake.lease_table,
            "STATE_TABLE": lake.state_table,
            "DATASETS_CONFIG": str(DATASETS_CONFIG),
        }
    )
    async with AwsClients(lake) as clients:
        s3 = S3RawWriter(await clients.s3(), lake.lake_bucket)
        hour = datetime(2026, 3, 1, 12, tzinfo=UTC)
        await land(
            s3, "posts", hour, "b1", [envelope("posts", str(i), post(i)) for i in range(1, 8)]
        )
        await land(s3, "posts", hour.replace(hour=13), "b2", [envelope("posts", "9", post(9))])
        kinesis = await clients.kinesis()
        shard = (await kinesis.list_shards(StreamName=lake.stream_name))["Shards"][0]["ShardId"]
        await kinesis.put_record(StreamName=lake.stream_name, Data=b"{}", PartitionKey="k")
        leases = DynamoDbLeaseStore(await clients.dynamodb(), lake.lease_table)
        await leases.create(Lease(shard, None, 0, Checkpoint.TRIM_HORIZON))
        taken = await leases.take((await leases.list_leases())[0], "worker-a")
        assert taken is not None
        store = DynamoDbStateStore(
            await clients.dynamodb(),
            lake.state_table,
            S3StateBlobs(await clients.s3(), lake.lake_bucket),
        )
        await store.put(
            replace(
                SourceState("posts"),
                cursor="2026-03-01T00:00:00Z",
                runs=3,
                last_run={"finished_at": "2026-03-01T12:00:00Z", "records": 42},
            )
        )
        bookmarks = S3BookmarkStore(await clients.s3(), lake.lake_bucket)
        mark = await bookmarks.get("posts")
        await bookmarks.put(
            replace(
                mark,
                runs=2,
                processed=frozenset({"raw/posts/x"}),
                last_run={
                    "finished_at": "2026-03-01T13:00:00Z",
                    "curated": 7,
                    "duplicates": 1,
                    "quarantined": 0,
                },
            )
        )
    text = await status(settings, ["posts", "comments"])
    tables = text.split("\n\n")
    raw = line_of(tables[0], "posts")
    assert raw[:4] == ["posts", "raw", "2", "8"]
    assert raw[-1] == "2026/03/01/13"
    lease = line_of(tables[1], shard)
    assert lease[:3] == [shard, "worker-a", "TRIM_HORIZON"]
    assert lease[4] == "ms"
    assert line_of(tables[2], "posts")[:5] == [
        "posts",
        "2026-03-01T00:00:00Z",
        "3",
        "2026-03-01T12:00:00Z",
        "42",
    ]
    assert line_of(tables[2], "comments") == ["comments", "-", "0", "-", "-", "no"]
    assert line_of(tables[3], "posts") == ["posts", "2", "1", "2026-03-01T13:00:00Z", "7", "1", "0"]


async def test_status_lists_curated_tables_and_snapshots(moto: MotoServer) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    settings = CommonSettings.model_validate(
        {
            "AWS_ENDPOINT_URL": moto.endpoint,
            "LAKE_BUCKET": lake.lake_bucket,
            "STREAM_NAME": lake.stream_name,
            "LEASE_TABLE": lake.lease_table,
            "STATE_TABLE": lake.state_table,
            "DATASETS_CONFIG": str(DATASETS_CONFIG),
        }
    )
    async with AwsClients(lake) as clients:
        bookmarks = S3BookmarkStore(await clients.s3(), lake.lake_bucket)
        snapshot = {
            "id": "snapshot-000002-r1",
            "location": "curated/items_current/snapshot-000002-r1/",
            "inputs": {"items": "5/20260301T125900Z-0a1b2c3d"},
            "rows": 12,
            "files": 1,
            "columns": [["_id", "string"]],
            "created_at": "2026-03-01T13:00:00Z",
        }
        mark = await bookmarks.get("items_current")
        catalog = {"snapshot": "snapshot-000001-r0"}  # Glue failed to switch: it lags
        failure = {"at": "2026-03-01T13:00:05Z", "error": "items_current: glue throttled"}
        last_run = {"snapshot": snapshot, "catalog": catalog}
        await bookmarks.put(replace(mark, runs=2, last_run=last_run, last_error=failure))
    text = await status(settings, [])
    sections = [s for s in text.split("\n\n") if s.startswith("Curated tables")]
    assert len(sections) == 1, text  # the replay history follows it
    tables = sections[0]
    assert line_of(tables, "items_current") == [
        "items_current",
        "current",
        "snapshot-000002-r1",
        "12",
        "2026-03-01T13:00:00Z",
        "items",
        "run",
        "5/20260301T125900Z-0a1b2c3d",
        "snapshot-000001-r0",
        "2026-03-01T13:00:05Z:",
        "items_current:",
        "glue",
        "throttled",
    ]
    assert line_of(tables, "orders_lines")[:4] == ["orders_lines", "child", "appended", "with"]
    assert line_of(tables, "posts_with_users")[:5] == [
        "posts_with_users",
        "derived",
        "no",
        "snapshot",
        "yet",
    ]
