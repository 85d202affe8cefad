"""`python -m tributary_stack status`: what a person on call wants to see, as tables.

Per dataset and zone: objects, records, bytes, newest partition; per shard: lease owner,
checkpoint and how far behind the stream's tip it is; importer cursors and last runs; the last
curate run per dataset. Reads only, through the same stores the services write with, so it works
against the embedded stack and against AWS alike (the same environment variables).
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tributary.aws import AwsClients
from tributary.clock import iso_utc
from tributary.dataset import DatasetRegistry
from tributary.layout import Zone
from tributary.raw_writer import META_RECORDS
from tributary.s3_writer import S3RawWriter
from tributary.settings import CommonSettings
from tributary.table import render
from tributary_curate.bookmark import S3BookmarkStore
from tributary_curate.claim import S3ClaimStore
from tributary_curate.snapshots import snapshot_of
from tributary_importer.state_blob import S3StateBlobs
from tributary_importer.state_dynamodb import DynamoDbStateStore
from tributary_stack.replay.history import history_table
from tributary_stream.lease import Checkpoint
from tributary_stream.lease_table import DynamoDbLeaseStore

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
                if lease.checkpoint == Checkpoint.AT_TIMESTAMP and lease.timestamp is not None:
                    position: dict[str, Any] = {  # a rewound lease (tributary_stack.replay)
                        "ShardIteratorType": "AT_TIMESTAMP",
                        "Timestamp": lease.timestamp,
                    }
                elif lease.checkpoint in (Checkpoint.TRIM_HORIZON, Checkpoint.AT_TIMESTAMP):
                    position = {"ShardIteratorType": "TRIM_HORIZON"}
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
        quality = await quality_table(bookmarks, registry)
        if quality:
            out.append(quality)
        out.append(await curated_tables(registry, bookmarks))
        out.append(await replay_history(clients, settings))
    return "\n".join(out)


async def replay_history(clients: AwsClients, settings: CommonSettings) -> str:
    """The redrive, rewind and reprocess runs (see tributary_stack.replay.history)."""
    return await history_table(S3RawWriter(await clients.s3(), settings.lake_bucket))


# ---- data quality ------------------------------------------------------------------------------


def quality_verdicts(last_run: dict[str, Any], last_error: dict[str, Any]) -> list[list[object]]:
    """The latest run's rule results: a blocked run's (in `last_error`) when it came after the
    last published one, else the last published run's; each row rule, figure, rows, verdict."""
    blocked = bool(last_error.get("quality")) and str(last_error.get("at", "")) >= str(
        last_run.get("finished_at", "")
    )
    results = last_error["quality"] if blocked else last_run.get("quality", [])
    # A later failure of another kind keeps the block's verdict, stamped when it was given.
    at = last_error.get("quality_at", last_error.get("at", "-")) if blocked else "-"
    at = at if blocked else last_run.get("finished_at", "-")
    rows: list[list[object]] = []
    for r in results:
        verdict = "pass" if r["passed"] else "BLOCKED" if r["on_failure"] == "block" else "warn"
        rows.append([r["rule"], r["on_failure"], f"{r['figure']:g}", r["rows"], verdict, at])
    return rows


async def quality_table(
    bookmarks: S3BookmarkStore, registry: DatasetRegistry, now: datetime | None = None
) -> str:
    """The quality rules' latest results per dataset (empty when no dataset declares any)."""
    rows: list[list[object]] = []
    waiting: list[str] = []
    for name, dataset in registry.items():
        if not dataset.quality:
            continue
        mark = await bookmarks.get(name)
        verdicts = quality_verdicts(mark.last_run, mark.last_error)
        if any(v[4] == "BLOCKED" for v in verdicts):
            waiting.append(blocked_note(name, mark.last_error, now or datetime.now(UTC)))
        if not verdicts:
            rows += [
                [name, rule.text, rule.on_failure.value, "-", "-", "not run yet", "-"]
                for rule in dataset.quality
            ]
        rows += [[name, *verdict] for verdict in verdicts]
    if not rows:
        return ""
    table = render(
        ["dataset", "rule", "on failure", "figure", "rows", "result", "run at"],
        rows,
        title="\nData quality (the latest curate run's rules: quality: in the registry)",
    )
    return "\n".join([table, *waiting])


def blocked_note(name: str, last_error: dict[str, Any], now: datetime) -> str:
    """How long a blocked dataset's raw backlog has waited: raw expires RawRetentionDays (90 by
    default) after it lands, so a block left alone loses data."""
    oldest = str(last_error.get("oldest_raw", ""))
    found = re.fullmatch(r"year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})", oldest)
    if found is None:
        since = "its waiting raw objects"
    else:
        year, month, day, hour = (int(g) for g in found.groups())
        landed = datetime(year, month, day, hour, tzinfo=UTC)
        days = (now - landed).total_seconds() / 86400
        since = (
            f"its oldest waiting raw object landed {landed:%Y-%m-%dT%H}:00Z, {days:.1f} days ago"
        )
    return (
        f"{name} is BLOCKED by a quality rule and curates nothing new; {since}. Raw is kept "
        "RawRetentionDays (90 by default) after it lands: fix the data or relax the rule "
        "before then, or it expires uncurated."
    )


async def curated_tables(registry: DatasetRegistry, bookmarks: S3BookmarkStore) -> str:
    """Every curated table: datasets and child tables (appended to), current-state and derived
    tables (published as snapshots: which one readers see, its rows, the input runs it is of)."""
    rows = []
    for table in registry.tables():
        if not table.snapshot:
            parent = table.inputs[0]
            how = "appended" if parent == table.name else f"appended with {parent}"
            rows.append([table.name, table.kind.value, how, "-", "-", "-", "-", "-"])
            continue
        pointer = await bookmarks.get(table.name)
        error = pointer.last_error
        failure = f"{error.get('at', '-')}: {error.get('error', '-')}" if error else "-"
        snapshot = snapshot_of(pointer)
        waiting = pointer.last_run.get("waiting") or {}
        if snapshot is None:
            state = "no snapshot yet"
            if waiting:  # a snapshot table waits for an input's first curated rows
                state = f"waiting since {waiting.get('since', '-')}: {waiting.get('reason', '-')}"
            rows.append([table.name, table.kind.value, state, "-", "-", "-", "-", failure])
            continue
        empty = set(snapshot.get("empty_inputs", []))  # a left join's side: columns null
        inputs = ", ".join(
            f"{n}: no rows yet (columns null)" if n in empty else f"{n} run {r}"
            for n, r in snapshot.get("inputs", {}).items()
        )
        glue = (pointer.last_run.get("catalog") or {}).get("snapshot") or "-"
        rows.append(
            [
                table.name,
                table.kind.value,
                snapshot["id"],
                snapshot.get("rows", "-"),
                snapshot.get("created_at", "-"),
                inputs,
                glue,
                failure,
            ]
        )
    return render(
        [
            "table",
            "kind",
            "snapshot (DuckDB)",
            "rows",
            "published",
            "computed from",
            "Glue names",
            "last failure",
        ],
        rows,
        title="\nCurated tables (snapshot pointers in _state/curate/<table>/bookmark.json)",
    )
