"""The Glue Data Catalog after a curate run: the table, its new partitions, its crawler.

The table is (re)declared with the schema the job wrote, so Athena can query new partitions at
once. When the columns change (a column added, a type widened), every existing partition's
StorageDescriptor gets the new columns first (`BatchUpdatePartition`) and the table after, so
Athena never sees a table and partitions that disagree (HIVE_PARTITION_SCHEMA_MISMATCH), and a
crash in between is redone by the next run (the table still differs).
`BatchCreatePartition` registers the partitions the run wrote (existing ones are fine);
the crawler (created by the deploy's addon, new folders only) is started to pick up anything
else. A crawler that is already running is not an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error

if TYPE_CHECKING:
    from types_aiobotocore_glue import GlueClient

log = logging.getLogger(__name__)

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


@dataclass(frozen=True, slots=True)
class TableShape:
    """A curated table: columns (name, Hive type), partition keys, S3 location; `archive`
    False for a snapshot table (switched each recompute: Glue caps the versions it keeps)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    partition_keys: tuple[str, ...]
    location: str
    archive: bool = True


class Catalog(Protocol):
    """What the curate job needs from a data catalog."""

    async def ensure_table(self, table: TableShape) -> None:
        """Create the table, or update its columns (and every partition's) when they changed,
        and its location (one update: a snapshot table switches snapshots so)."""

    async def add_partitions(self, table: TableShape, values: list[tuple[str, ...]]) -> int:
        """Register partitions (existing ones are skipped); returns how many were new."""

    async def start_crawler(self, name: str) -> str:
        """Start a crawler; returns 'started', 'already running' or 'missing'."""


def _storage(location: str, columns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {
        "Columns": [{"Name": n, "Type": t} for n, t in columns],
        "Location": location,
        "InputFormat": PARQUET_INPUT,
        "OutputFormat": PARQUET_OUTPUT,
        "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE},
    }


class GlueCatalog:
    """`Catalog` on the Glue Data Catalog."""

    def __init__(self, glue: GlueClient, database: str) -> None:
        self._glue = glue
        self._database = database

    async def ensure_table(self, table: TableShape) -> None:
        """CreateTable, or UpdateTable when the columns or the location differ."""
        table_input: Any = {
            "Name": table.name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
            "StorageDescriptor": _storage(table.location, table.columns),
            "PartitionKeys": [{"Name": k, "Type": "string"} for k in table.partition_keys],
        }
        try:
            current = await self._glue.get_table(DatabaseName=self._database, Name=table.name)
        except ClientError as exc:
            if error_code(exc) != "EntityNotFoundException":
                raise _translate(exc, table.name) from exc
            current = None
        except BotoCoreError as exc:
            raise _translate(exc, table.name) from exc
        try:
            if current is None:
                await self._glue.create_table(DatabaseName=self._database, TableInput=table_input)
                return
            have = [
                (c["Name"], c["Type"])
                for c in current["Table"].get("StorageDescriptor", {}).get("Columns", [])
            ]
            location = current["Table"].get("StorageDescriptor", {}).get("Location")
            if tuple(have) != table.columns and table.partition_keys:
                await self._update_partitions(table)
            # A snapshot table switches to its new snapshot here: location and columns at once.
            if tuple(have) != table.columns or location != table.location:
                await self._glue.update_table(
                    DatabaseName=self._database,
                    TableInput=table_input,
                    SkipArchive=not table.archive,
                )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, table.name) from exc

    async def _update_partitions(self, table: TableShape) -> None:
        """Every partition's StorageDescriptor to the table's new columns, 100 at a time."""
        values: list[list[str]] = []
        paginator = self._glue.get_paginator("get_partitions")
        async for page in paginator.paginate(DatabaseName=self._database, TableName=table.name):
            values += [list(p["Values"]) for p in page.get("Partitions", [])]
        for start in range(0, len(values), 100):
            entries: Any = [
                {
                    "PartitionValueList": v,
                    "PartitionInput": {
                        "Values": v,
                        "StorageDescriptor": _storage(
                            _partition_location(table, tuple(v)), table.columns
                        ),
                    },
                }
                for v in values[start : start + 100]
            ]
            answer = await self._glue.batch_update_partition(
                DatabaseName=self._database, TableName=table.name, Entries=entries
            )
            if answer.get("Errors"):
                raise _translate(
                    RuntimeError(f"BatchUpdatePartition failed: {answer['Errors'][:3]}"),
                    table.name,
                )

    async def add_partitions(self, table: TableShape, values: list[tuple[str, ...]]) -> int:
        """BatchCreatePartition, 100 at a time; AlreadyExists entries are fine."""
        added = 0
        for start in range(0, len(values), 100):
            chunk = values[start : start + 100]
            entries: Any = [
                {
                    "Values": list(v),
                    "StorageDescriptor": _storage(_partition_location(table, v), table.columns),
                }
                for v in chunk
            ]
            try:
                response = await self._glue.batch_create_partition(
                    DatabaseName=self._database,
                    TableName=table.name,
                    PartitionInputList=entries,
                )
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc, table.name) from exc
            failed = [
                e
                for e in response.get("Errors", [])
                if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"
            ]
            if failed:
                raise _translate(
                    RuntimeError(f"BatchCreatePartition failed: {failed[:3]}"), table.name
                )
            added += len(chunk) - len(response.get("Errors", []))
        return added

    async def start_crawler(self, name: str) -> str:
        """StartCrawler; CrawlerRunningException means one is on its way already."""
        try:
            await self._glue.start_crawler(Name=name)
        except ClientError as exc:
            code = error_code(exc)
            if code == "CrawlerRunningException":
                return "already running"
            if code == "EntityNotFoundException":
                log.warning("no such crawler", extra={"crawler": name})
                return "missing"
            raise _translate(exc, name) from exc
        except BotoCoreError as exc:
            raise _translate(exc, name) from exc
        return "started"


@dataclass
class MemoryCatalog:
    """`Catalog` in memory (tests)."""

    tables: dict[str, TableShape] = field(default_factory=dict)
    partitions: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)
    partition_columns: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, str], ...]] = field(
        default_factory=dict
    )
    crawls: list[str] = field(default_factory=list)

    async def ensure_table(self, table: TableShape) -> None:
        """Remember the table; on a column change every partition takes the new columns."""
        current = self.tables.get(table.name)
        if current is not None and current.columns != table.columns:
            for values in self.partitions.get(table.name, set()):
                self.partition_columns[(table.name, values)] = table.columns
        self.tables[table.name] = table

    async def add_partitions(self, table: TableShape, values: list[tuple[str, ...]]) -> int:
        """Remember the partitions (with the columns they were declared with)."""
        have = self.partitions.setdefault(table.name, set())
        new = set(values) - have
        have |= new
        for v in new:
            self.partition_columns[(table.name, v)] = table.columns
        return len(new)

    async def start_crawler(self, name: str) -> str:
        """Remember the start."""
        self.crawls.append(name)
        return "started"


def _partition_location(table: TableShape, values: tuple[str, ...]) -> str:
    pairs = zip(table.partition_keys, values, strict=True)
    return table.location + "".join(f"{k}={v}/" for k, v in pairs)


def _translate(exc: Exception, what: str) -> Exception:
    return translate_aws_error(exc, f"glue catalog {what}", "check GLUE_DATABASE and IAM")
