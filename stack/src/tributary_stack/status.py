"""`python -m tributary_stack status`: what a person on call wants to see, as tables.

Per dataset and zone: objects, records, bytes, newest partition; per shard: lease owner,
checkpoint and how far behind the stream's tip it is; importer cursors and last runs; the last
curate run per dataset. Reads only, through the same stores the services write with, so it works
against the embedded stack and against AWS alike (the same environment variables).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tributary.aws import AwsClients
from tributary.clock import iso_utc
from tributary.dataset import DatasetRegistry
from tributary.layout import Zone
from tributary.raw_writer import META_RECORDS
from tributary.settings import CommonSettings
from tributary.table import render
from tributary_curate.bookmark import S3BookmarkStore
from tributary_curate.claim import S3ClaimStore
from tributary_importer.state_blob import S3StateBlobs
from tributary_importer.state_dynamodb import DynamoDbStateStore
from tributary_stream.lease import Checkpoint, DynamoDbLeaseStore

HEAD_CONCURRENCY = 32


@dataclass
class ZoneTally:
    """Objects, records (from object metadata), bytes and the newest partition of one prefix."""

    objects: int = 0
    records: int = 0
    bytes: int = 0
    newest: str = ""


async def zone_tallies(clients: AwsClients, bucket: str) -> dict[tuple[str, str], ZoneTally]:
    """(dataset, zone) → tally, from one listing and a HEAD per object (record counts)."""
    s3 = await clients.s3()
    tallies: dict[tuple[str, str], ZoneTally] = defaultdict(ZoneTally)
    keys: list[tuple[str, str, str]] = []
    paginator = s3.get_paginator("list_objects_v2")
    for zone in (Zone.RAW, Zone.CURATED, Zone.QUARANTINE):
        async for page in paginator.paginate(Bucket=bucket, Prefix=f"{zone}/"):
            for obj in page.get("Contents", []):
                parts = obj["Key"].split("/")
                if len(parts) < 3:
                    continue
                tally = tallies[(parts[1], str(zone))]
                tally.objects += 1
                tally.bytes += int(obj.get("Size", 0))
                partition = "/".join(p.split("=", 1)[-1] for p in parts[2:-1])
                tally.newest = max(tally.newest, partition)
                keys.append((parts[1], str(zone), obj["Key"]))
    gate = asyncio.Semaphore(HEAD_CONCURRENCY)

    async def count(dataset: str, zone: str, key: str) -> None:
        async with gate:
            head = await s3.head_object(Bucket=bucket, Key=key)
        tallies[(dataset, zone)].records += int(head.get("Metadata", {}).get(META_RECORDS, 0))

    await asyncio.gather(*(count(*k) for k in keys))
    return tallies


async def shard_rows(clients: AwsClients, settings: CommonSettings) -> list[list[object]]:
    """Per lease: shard, owner, checkpoint, milliseconds behind the stream's tip."""
    leases = await DynamoDbLeaseStore(await clients.dynamodb(), settings.lease_table).list_leases()
    kinesis = await clients.kinesis()
    rows: list[list[object]] = []
    for lease in sorted(leases, key=lambda item: item.key):
        behind: object = "-"
        if lease.checkpoint == Checkpoint.SHARD_END:
            behind = "done"
        else:
            try:
                if lease.checkpoint in (Checkpoint.TRIM_HORIZON, Checkpoint.AT_TIMESTAMP):
                    position: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
                elif lease.checkpoint == Checkpoint.LATEST:
                    position = {"ShardIteratorType": "LATEST"}
                else:
                    position = {
                        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                        "StartingSequenceNumber": lease.checkpoint,
                    }
                iterator = await kinesis.get_shard_iterator(
                    StreamName=settings.stream_name, ShardId=lease.key, **position
                )
                answer = await kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=1)
                behind = f"{int(answer.get('MillisBehindLatest', 0)):,} ms"
            except ClientError as exc:
                behind = f"? ({exc.response.get('Error', {}).get('Code', 'error')})"
        checkpoint = (
            lease.checkpoint if len(lease.checkpoint) <= 24 else f"…{lease.checkpoint[-12:]}"
        )
        rows.append([lease.key, lease.owner or "(free)", checkpoint, behind, lease.counter])
    return rows


async def status(settings: CommonSettings, sources: list[str]) -> str:
    """Every table, as text."""
    registry = DatasetRegistry.from_file(settings.datasets_config)
    out = []
    async with AwsClients(settings) as clients:
        tallies = await zone_tallies(clients, settings.lake_bucket)
        zone_rows = [
            [dataset, zone, t.objects, f"{t.records:,}", f"{t.bytes:,}", t.newest or "-"]
            for (dataset, zone), t in sorted(tallies.items())
        ]
        out.append(
            render(
                ["dataset", "zone", "objects", "records", "bytes", "newest partition"],
                zone_rows,
                title=f"Lake s3://{settings.lake_bucket}",
            )
        )
        out.append(
            render(
                ["shard", "lease owner", "checkpoint", "behind tip", "lease counter"],
                await shard_rows(clients, settings),
                title=f"\nStream {settings.stream_name} (leases in {settings.lease_table})",
            )
        )
        store = DynamoDbStateStore(
            await clients.dynamodb(),
            settings.state_table,
            S3StateBlobs(await clients.s3(), settings.lake_bucket),
        )
        importer_rows = []
        for source in sources:
            state = await store.get(source)
            last = state.last_run
            importer_rows.append(
                [
                    source,
                    state.cursor or "-",
                    state.runs,
                    last.get("finished_at", "-"),
                    last.get("records", "-"),
                    "yes" if state.run is not None else "no",
                ]
            )
        out.append(
            render(
                ["source", "cursor", "runs", "last run finished", "records", "run in progress"],
                importer_rows,
                title=f"\nImporter (state in {settings.state_table})",
            )
        )
        bookmarks = S3BookmarkStore(await clients.s3(), settings.lake_bucket)
        claims = S3ClaimStore(await clients.s3(), settings.lake_bucket)
        curate_rows, failure_rows, claim_rows = [], [], []
        for name in registry:
            mark = await bookmarks.get(name)
            claim = await claims.read(name)
            if claim is not None:
                claim_rows.append([name, claim.run_id, claim.owner, iso_utc(claim.expires_at)])
            if mark.last_error:
                error = mark.last_error
                failure_rows.append([name, error.get("at", "-"), error.get("reason", "-")])
            last = mark.last_run
            curate_rows.append(
                [
                    name,
                    mark.runs,
                    len(mark.processed),
                    last.get("finished_at", "-"),
                    last.get("curated", "-"),
                    last.get("duplicates", "-"),
                    last.get("quarantined", "-"),
                ]
            )
        out.append(
            render(
                [
                    "dataset",
                    "runs",
                    "raw objects done",
                    "last run finished",
                    "curated",
                    "duplicates",
                    "quarantined",
                ],
                curate_rows,
                title="\nCurate (bookmarks in _state/curate/)",
            )
        )
        if claim_rows:  # a run in progress (or a killed one whose claim has not expired yet)
            out.append(
                render(
                    ["dataset", "run id", "held by", "claim expires"],
                    claim_rows,
                    title="\nCurate runs in progress (claims in _state/curate/)",
                )
            )
        if failure_rows:  # a dataset whose config or transform failed: it needs a person
            out.append(
                render(
                    ["dataset", "failed at", "reason"],
                    failure_rows,
                    title="\nCurate failures (the last run of these datasets failed)",
                )
            )
    return "\n".join(out)
