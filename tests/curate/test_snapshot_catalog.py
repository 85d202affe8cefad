"""A snapshot table's Glue entry switches snapshots in one UpdateTable: same columns, a new
location (on moto, and the same rule on the in-memory catalog)."""

from __future__ import annotations

from typing import Any

from tributary.aws import AwsClients
from tributary.settings import AwsSettings
from tributary_curate.catalog import GlueCatalog, MemoryCatalog, TableShape

COLUMNS = (("_id", "string"), ("id", "bigint"), ("user_name", "string"))


def shape(snapshot: str) -> TableShape:
    return TableShape(
        "posts_with_users", COLUMNS, (), f"s3://lake/curated/t/{snapshot}/", archive=False
    )


class Spy:
    """The Glue client, recording UpdateTable's arguments."""

    def __init__(self, glue: Any) -> None:
        self.glue, self.updates = glue, []

    async def update_table(self, **kw: Any) -> Any:
        self.updates.append(kw)
        return await self.glue.update_table(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.glue, name)


async def test_same_columns_new_location_switches_the_table(
    lake: AwsSettings, clients: AwsClients
) -> None:
    glue = await clients.glue()
    database = lake.glue_database  # this test's own (moto holds every test's databases)
    spy = Spy(glue)
    catalog = GlueCatalog(spy, database)
    await catalog.ensure_table(shape("snapshot-000001-a"))
    await catalog.ensure_table(shape("snapshot-000002-b"))
    # No table version per snapshot (Glue caps versions per table and account).
    assert [u["SkipArchive"] for u in spy.updates] == [True]
    table = (await glue.get_table(DatabaseName=database, Name="posts_with_users"))["Table"]
    assert table["StorageDescriptor"]["Location"] == "s3://lake/curated/t/snapshot-000002-b/"
    assert table.get("PartitionKeys", []) == []
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert tuple(columns) == COLUMNS


async def test_memory_catalog_keeps_the_new_location() -> None:
    catalog = MemoryCatalog()
    await catalog.ensure_table(shape("snapshot-000001-a"))
    await catalog.ensure_table(shape("snapshot-000002-b"))
    assert catalog.tables["posts_with_users"].location.endswith("snapshot-000002-b/")
