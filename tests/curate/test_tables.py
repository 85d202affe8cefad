"""Curated tables beyond datasets, through the curate command line on moto (S3 + Glue): a derived
join whose right side changes between runs, relationalized child tables (null, empty and
null-element arrays), a current-state table with a late, older version; each table's Glue
entry checked against its files read back, and each seen through `query`."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import DATASETS_CONFIG, lake_settings
from tests.curate.lake import envelope, land, post
from tests.curate.test_wire import cli
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary.s3_writer import S3RawWriter
from tributary.version import canonical_instant, versioned_id
from tributary_curate.bookmark import S3BookmarkStore
from tributary_importer.landing import record_identity
from tributary_stack.moto import MotoServer

pytestmark = pytest.mark.timeout(1500)  # several CLI runs, each its own Spark
DAY1, DAY2 = datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 2, 10, tzinfo=UTC)
DAY3 = datetime(2026, 3, 3, 10, tzinfo=UTC)
AT1, AT2, AT3 = "2026-03-01T10:00:00Z", "2026-03-02T10:00:00Z", "2026-03-03T10:00:00Z"
HIVE = {  # the Hive type the Glue table must declare for each Arrow type the files hold
    pa.string(): "string",
    pa.int64(): "bigint",
    pa.int32(): "int",
    pa.float64(): "double",
    pa.bool_(): "boolean",
}


@dataclass
class Lake:
    env: dict[str, str]
    s3: S3RawWriter
    clients: AwsClients
    database: str
    bucket: str

    def run(self, *datasets: str) -> str:
        args = [x for d in datasets for x in ("--dataset", d)]
        done = cli(self.env, "run", *args, timeout=900)  # each its own Spark, on a loaded machine
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    def query(self, table: str, *columns: str, order: str = "_id") -> list[str]:
        """`columns` of `table` through `query` (DuckDB), one `a|b|c` line per row, null `-`."""
        joined = ", ".join(f"coalesce(cast({c} as varchar), '-')" for c in columns)
        sql = f"select concat_ws('|', {joined}) as row from {table} order by {order}"
        done = cli(self.env, "query", sql)
        assert done.returncode == 0, done.stderr
        return [line.strip() for line in done.stdout.splitlines()[2:]]

    async def table(self, name: str) -> dict[str, Any]:
        glue = await self.clients.glue()
        found = await glue.get_table(DatabaseName=self.database, Name=name)
        return dict(found["Table"])

    async def files(self, prefix: str) -> list[pa.Table]:
        keys = [k for k in await self.s3.keys(prefix) if k.endswith(".parquet")]
        return [pq.read_table(io.BytesIO(await self.s3.get(k))) for k in keys]

    async def snapshot(self, table: str) -> dict[str, Any]:
        mark = await S3BookmarkStore(await self.clients.s3(), self.bucket).get(table)
        return dict(mark.last_run["snapshot"])


@pytest.fixture
async def lake(moto: MotoServer, tmp_path: Path) -> AsyncIterator[Lake]:
    settings = lake_settings(moto.endpoint)
    await bootstrap(settings, shards=1)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "LAKE_BUCKET": settings.lake_bucket,
        "GLUE_DATABASE": settings.glue_database,
        "DATASETS_CONFIG": str(DATASETS_CONFIG),
        "CURATE_WORK_DIR": str(tmp_path / "work"),
        "CURATE_QUERY_CACHE": str(tmp_path / "cache"),
        "LOG_LEVEL": "WARNING",
    }
    async with AwsClients(settings) as clients:
        s3 = S3RawWriter(await clients.s3(), settings.lake_bucket)
        yield Lake(env, s3, clients, settings.glue_database, settings.lake_bucket)


def user(i: int, name: str, updated_at: str = AT1) -> dict[str, Any]:
    return {
        "updated_at": updated_at,  # users' version_field
        "id": i,
        "name": name,
        "username": name.lower(),
        "email": f"u{i}@example.test",
        "address": {"city": f"City {i}", "zipcode": "12345", "geo": {"lat": "1.5", "lng": "2.5"}},
        "company": {"name": f"Co {i}", "catchPhrase": "x", "bs": "y"},
    }


def columns_of(entity: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["Name"], c["Type"]) for c in entity["StorageDescriptor"]["Columns"]]


def hive_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if isinstance(kind, pa.Decimal128Type):
        return f"decimal({kind.precision},{kind.scale})"
    return HIVE[kind]


def hive_columns(table: pa.Table) -> list[tuple[str, str]]:
    return [(f.name, hive_type(f.type)) for f in table.schema]


def importer_user(i: int, name: str, updated_at: str, received_at: str) -> bytes:
    """A users record as the shipped full-refresh `users` source lands it: the envelope id is the
    importer's own (`record_identity`: a content hash, or `<id>@<updated_at>` once the registry
    declares users' version_field)."""
    record = user(i, name, updated_at)
    registry = DatasetRegistry.from_file(DATASETS_CONFIG)
    record_id, _ = record_identity("id", None, record, registry.get("users"))
    return envelope("users", record_id, record, received_at)


async def test_a_join_follows_a_user_renamed_after_their_posts(lake: Lake) -> None:
    """A user renamed after their posts were curated, renamed back to the first name (A -> B ->
    A within the dedupe window), then a late replay of an older export: posts_with_users and
    users_current show the latest name at each step, with snapshots switched and expired."""
    await land(
        lake.s3,
        "posts",
        DAY1,
        "p1",
        [envelope("posts", str(i), post(i), AT1) for i in (1, 2, 3, 6)],
    )
    users = [importer_user(i, f"Name{i}", AT1, AT1) for i in (1, 2, 3)]
    await land(lake.s3, "users", DAY1, "u1", users)
    lake.run()
    first = await lake.snapshot("posts_with_users")
    columns = ("id", "user_name", "user_email", "user_address_city", "user_company_name")
    assert lake.query("posts_with_users", *columns, "user_address_geo_lat", order="id") == [
        "1|Name2|u2@example.test|City 2|Co 2|1.5",
        "2|Name3|u3@example.test|City 3|Co 3|1.5",
        "3|-|-|-|-|-",  # userId 4: no such user (a left join keeps the post)
        "6|Name2|u2@example.test|City 2|Co 2|1.5",
    ]

    # User 2 renamed after their posts were curated: a new version, in a later hour.
    await land(lake.s3, "users", DAY2, "u2", [importer_user(2, "Renamed", AT2, AT2)])
    out = lake.run("users")
    assert "posts_with_users: snapshot" in out
    assert lake.query("posts_with_users", "id", "user_name", order="id") == [
        "1|Renamed",
        "2|Name3",
        "3|-",
        "6|Renamed",
    ]
    second = await lake.snapshot("posts_with_users")
    assert second["id"] != first["id"]

    # The Glue table switched to the new snapshot, unpartitioned, its columns those of the files.
    table = await lake.table("posts_with_users")
    assert table["StorageDescriptor"]["Location"] == f"s3://{lake.bucket}/{second['location']}"
    assert table.get("PartitionKeys", []) == []
    files = await lake.files(second["location"])
    assert files
    assert sum(f.num_rows for f in files) == 4
    assert all(hive_columns(f) == columns_of(table) for f in files)
    # The previous snapshot is kept (a query started before the switch may still read it).
    assert await lake.s3.keys(first["location"])

    again = lake.run()
    assert "posts_with_users: up to date" in again

    # A third version with snapshots kept 0 s: the first is deleted, the previous one stays.
    lake.env["CURATE_SNAPSHOT_RETAIN_S"] = "0"
    await land(lake.s3, "users", DAY2, "u3", [importer_user(3, "Third", AT2, AT2)])
    lake.run("users")
    third = await lake.snapshot("posts_with_users")
    assert lake.query("posts_with_users", "id", "user_name", order="id")[1] == "2|Third"
    assert await lake.s3.keys(first["location"]) == []
    assert await lake.s3.keys(second["location"])
    folders = {k.split("/")[2] for k in await lake.s3.keys("curated/posts_with_users/")}
    assert folders == {second["id"], third["id"]}

    # User 2 renamed back to the first name (A -> B -> A): a third version of user 2, not a
    # duplicate of the first (content-hash ids of a record without updated_at made it one).
    await land(lake.s3, "users", DAY3, "u4", [importer_user(2, "Name2", AT3, AT3)])
    lake.run("users")
    assert lake.query("users_current", "id", "name", order="id") == [
        "1|Name1",
        "2|Name2",
        "3|Third",
    ]
    assert lake.query("posts_with_users", "id", "user_name", order="id")[0] == "1|Name2"
    # A late replay of an older export (other content, an earlier updated_at) arrives last:
    # kept in users, but the current state stays the latest version (arrival order lost it).
    late = importer_user(2, "Carol", "2026-02-01T00:00:00Z", "2026-03-04T10:00:00Z")
    await land(lake.s3, "users", DAY3.replace(day=4), "u5", [late])
    lake.run("users")
    assert len(lake.query("users", "_id")) == 7
    assert lake.query("users_current", "id", "name", order="id") == [
        "1|Name1",
        "2|Name2",
        "3|Third",
    ]
    assert lake.query("posts_with_users", "id", "user_name", order="id")[0] == "1|Name2"


async def test_relationalized_lines_with_null_and_empty_arrays(lake: Lake) -> None:
    def order(i: int, lines: Any) -> bytes:
        data = {"id": i, "userId": 1, "placed_at": "2026-03-01T09:00:00Z", "status": "paid"}
        return envelope("orders", str(i), {**data, "lines": lines}, AT1)

    line = {"sku": "A", "qty": 2, "price": 1.25}
    orders = [
        order(1, [line, {**line, "sku": "B"}]),
        order(2, []),
        order(3, None),
        order(4, [None, {**line, "sku": "C"}]),
        order(5, [{"sku": "D", "qty": 1}]),  # price missing
    ]
    await land(lake.s3, "orders", DAY1, "o1", orders)
    lake.run("orders")
    got = lake.query("orders_lines", "_id", "_parent_id", "_index", "sku", "qty", "price")
    assert got == ["1#0|1|0|A|2|1.25", "1#1|1|1|B|2|1.25", "4#1|4|1|C|2|1.25", "5#0|5|0|D|1|-"]
    assert lake.query("orders", "_id") == ["1", "2", "3", "4", "5"]
    parent = await lake.table("orders")
    assert "lines" not in [n for n, _ in columns_of(parent)]
    child = await lake.table("orders_lines")
    assert [k["Name"] for k in child["PartitionKeys"]] == ["year", "month", "day"]
    files = await lake.files("curated/orders_lines/")
    assert all(hive_columns(f) == columns_of(child) for f in files)
    glue = await lake.clients.glue()
    partitions = await glue.get_partitions(DatabaseName=lake.database, TableName="orders_lines")
    keys = await lake.s3.keys("curated/orders_lines/")
    on_disk = {k.split("/", 2)[2].rsplit("/", 1)[0] for k in keys}
    registered = {
        p["StorageDescriptor"]["Location"].split("/orders_lines/")[1].rstrip("/")
        for p in partitions["Partitions"]
    }
    assert registered == on_disk == {"year=2026/month=03/day=01"}

    # A retry of order 1 and a new order: children curated once, the new one's added.
    await land(lake.s3, "orders", DAY2, "o2", [orders[0], order(6, [line])])
    lake.run("orders")
    assert lake.query("orders_lines", "_id") == ["1#0", "1#1", "4#1", "5#0", "6#0"]


async def test_items_current_keeps_the_newest_version_when_an_older_arrives_late(
    lake: Lake,
) -> None:
    def item(version: str, name: str, i: int = 7, at: str = AT1) -> bytes:
        """As the writers make it (`version_field: updated_at`): `_id` is `<id>@<version>`."""
        data = {"id": i, "name": name, "price": 1.5, "updated_at": version}
        return envelope("items", versioned_id(str(i), canonical_instant(version)), data, at)

    # Three versions of item 7 in one object (one request): all kept in items.
    await land(
        lake.s3,
        "items",
        DAY1,
        "i1",
        [
            item("2026-03-01T08:00:00Z", "v1"),
            item("2026-03-01T09:00:00Z", "v2"),
            item("2026-03-01T10:00:00Z", "v3"),
            item("2026-03-01T08:00:00Z", "only", 8),
        ],
    )
    lake.run("items")
    assert len(lake.query("items", "_id")) == 4
    assert lake.query("items_current", "id", "name", order="id") == ["7|v3", "8|only"]
    # An older version arrives a day after the newer ones (a lagging writer: the latest
    # `_received_at`, so "last arrival wins" would show it): kept in items, but items_current
    # still shows v3 (the greatest updated_at).
    await land(lake.s3, "items", DAY2, "i2", [item("2026-02-28T00:00:00Z", "old", at=AT2)])
    lake.run("items")
    assert len(lake.query("items", "_id")) == 5
    assert lake.query("items_current", "id", "name", order="id") == ["7|v3", "8|only"]
    table = await lake.table("items_current")
    snapshot = await lake.snapshot("items_current")
    files = await lake.files(snapshot["location"])
    assert all(hive_columns(f) == columns_of(table) for f in files)
