"""The Glue catalog on moto after a schema change: the table and every partition's
StorageDescriptor agree (else Athena raises HIVE_PARTITION_SCHEMA_MISMATCH); and the same case
on the in-memory catalog."""

from __future__ import annotations

from typing import Any

import pytest

from tributary.aws import AwsClients
from tributary.settings import AwsSettings
from tributary_curate.catalog import Catalog, GlueCatalog, MemoryCatalog, TableShape

OLD = (("_id", "string"), ("id", "bigint"), ("price", "bigint"))
NEW = (("_id", "string"), ("id", "bigint"), ("price", "double"), ("colour", "string"))
DAYS = [("2026", "03", f"{d:02d}") for d in range(1, 4)]


def shape(columns: tuple[tuple[str, str], ...]) -> TableShape:
    return TableShape("items", columns, ("year", "month", "day"), "s3://lake/curated/items/")


async def test_added_column_and_widened_type_reach_every_partition(
    lake: AwsSettings, clients: AwsClients
) -> None:
    glue = await clients.glue()
    database = lake.glue_database  # this test's own (moto holds every test's databases)
    catalog = GlueCatalog(glue, database)
    await catalog.ensure_table(shape(OLD))
    assert await catalog.add_partitions(shape(OLD), DAYS[:2]) == 2
    # A registry change: price widened integer → number, a column added; the run touches day 3.
    await catalog.ensure_table(shape(NEW))
    assert await catalog.add_partitions(shape(NEW), DAYS[1:]) == 1
    table = (await glue.get_table(DatabaseName=database, Name="items"))["Table"]
    assert _columns(table) == NEW
    partitions = (await glue.get_partitions(DatabaseName=database, TableName="items"))["Partitions"]
    assert sorted(tuple(p["Values"]) for p in partitions) == DAYS
    for partition in partitions:
        assert _columns(partition) == NEW, partition["Values"]
        day = partition["Values"][2]
        assert partition["StorageDescriptor"]["Location"].endswith(f"/day={day}/")


@pytest.mark.parametrize("catalog", [MemoryCatalog()])
async def test_memory_catalog_follows_the_same_rule(catalog: Catalog) -> None:
    assert isinstance(catalog, MemoryCatalog)
    await catalog.ensure_table(shape(OLD))
    await catalog.add_partitions(shape(OLD), DAYS[:2])
    await catalog.ensure_table(shape(NEW))
    await catalog.add_partitions(shape(NEW), DAYS[1:])
    assert set(catalog.partition_columns.values()) == {NEW}


def _columns(entity: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((c["Name"], c["Type"]) for c in entity["StorageDescriptor"]["Columns"])
