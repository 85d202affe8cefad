"""The `redrive`, `rewind` and `reprocess` subcommands of `python -m tributary_stack`.

Like `status`, they read the same environment variables as the services (AWS_ENDPOINT_URL,
LAKE_BUCKET, STREAM_NAME, LEASE_TABLE, DATASETS_CONFIG...), so they run against the embedded
stack and AWS alike. Each records its run in the history `status` shows (not with --dry-run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

from tributary.aws import AwsClients
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError
from tributary.s3_writer import S3RawWriter
from tributary.settings import CommonSettings
from tributary.table import render
from tributary_curate.bookmark import S3BookmarkStore
from tributary_curate.claim import S3ClaimStore
from tributary_stack.replay.history import Command, HistoryLog, default_actor, parse_time
from tributary_stack.replay.recheck import Rechecker
from tributary_stack.replay.redrive import Redriver, RedriveRequest, Tally
from tributary_stack.replay.reprocess import (
    CurateRunInProgressError,
    GlueJobStarter,
    RangeCount,
    Reprocessor,
    hour_folder,
    start_command,
)
from tributary_stack.replay.rewind import (
    Action,
    Release,
    Rewinder,
    RewindPoint,
    RewindRequest,
    nothing_new,
    rewind_id,
)
from tributary_stream.lease_table import DynamoDbLeaseStore
from tributary_stream.route import UNROUTED, Router
from tributary_stream.settings import StreamSettings
from tributary_stream.stream import KinesisStreamReader

COMMANDS = ("redrive", "rewind", "reprocess")


def add_parsers(sub: Any) -> None:
    """Add the three subcommands to an argparse subparsers object."""
    rewind = sub.add_parser("rewind", help="consume the stream again from a time (or TRIM_HORIZON)")
    rewind.add_argument("--to", required=True, help="ISO-8601 time, or TRIM_HORIZON")
    rewind.add_argument("--shard", action="append", default=[], help="only this shard (repeatable)")
    rewind.add_argument("--id", help="rewind id (default: derived from --to and the shards)")
    rewind.add_argument(
        "--lookback-hours",
        type=float,
        default=2.0,
        help="how far before the point raw objects may start (at least the batch age)",
    )
    rewind.add_argument(
        "--release-timeout",
        type=float,
        default=60.0,
        help="seconds running workers get to checkpoint and release a lease before it is "
        "taken from them (a dead worker's is)",
    )
    redrive = sub.add_parser(
        "redrive", help="quarantined records the current registry accepts, back to raw"
    )
    redrive.add_argument("--dataset", required=True, help="the dataset to redrive")
    redrive.add_argument("--since", help="only records received at or after (ISO-8601)")
    redrive.add_argument("--until", help="only records received before (ISO-8601)")
    redrive.add_argument("--reason", help="only records with a reason containing this text")
    reprocess = sub.add_parser("reprocess", help="curate a range of raw hours again")
    reprocess.add_argument("--dataset", required=True, help="the dataset to re-curate")
    reprocess.add_argument("--from", dest="first", required=True, help="first hour (2026-12-01T10)")
    reprocess.add_argument("--to", dest="last", required=True, help="last hour, inclusive")
    reprocess.add_argument(
        "--run",
        choices=["glue", "local", "none"],
        default=None,
        help="glue: start the deployed curate job (the default on AWS); local: run the curate "
        "job here (Spark local; the default with AWS_ENDPOINT_URL); none: leave it to the next run",
    )
    reprocess.add_argument(
        "--job",
        default=os.environ.get("CURATE_JOB_NAME"),
        help="the Glue curate job (default: CURATE_JOB_NAME, the stack output CurateJobName)",
    )
    for parser in (rewind, redrive, reprocess):
        parser.add_argument("--dry-run", action="store_true", help="print what it would do")
        parser.add_argument("--by", default=None, help="who runs it (default: user@host)")


def parse_point(value: str) -> RewindPoint:
    """`TRIM_HORIZON` or an ISO-8601 time."""
    if value.strip().upper() == "TRIM_HORIZON":
        return RewindPoint(None)
    return RewindPoint(parse_time(value))


async def run(args: argparse.Namespace, settings: CommonSettings) -> int:
    """Run the parsed command; print its table; 0 on success."""
    if args.command == "rewind":
        return await _rewind(args, settings)
    if args.command == "redrive":
        return await _redrive(args, StreamSettings())
    if args.command == "reprocess":
        return await _reprocess(args, settings)
    raise PermanentError(f"unknown replay command {args.command!r}")


async def _rewind(args: argparse.Namespace, settings: CommonSettings) -> int:
    point = parse_point(args.to)
    if args.lookback_hours <= 0:
        raise PermanentError("--lookback-hours must be positive")
    if args.release_timeout < 0:
        raise PermanentError("--release-timeout must not be negative")
    registry = DatasetRegistry.from_file(settings.datasets_config)
    shards = frozenset(args.shard)
    request = RewindRequest(
        point,
        shards,
        args.by or default_actor(),
        args.id or rewind_id(point, sorted(shards)),
        timedelta(hours=args.lookback_hours),
        args.dry_run,
        args.release_timeout,
    )
    clock = SystemClock()
    async with AwsClients(settings) as clients:
        dynamodb = await clients.dynamodb()
        lake = S3RawWriter(await clients.s3(), settings.lake_bucket)
        history = HistoryLog(lake, clock)
        what = {"to": str(point), "shards": sorted(shards), "rewind_id": request.rewind_id}
        record = history.begin(Command.REWIND, request.by, what, dry_run=request.dry_run)
        await history.started(record)
        rewinder = Rewinder(
            DynamoDbLeaseStore(dynamodb, settings.lease_table),
            KinesisStreamReader(await clients.kinesis(), settings.stream_name),
            lake,
            [*registry, UNROUTED],
            clock,
            lambda line: print(line, file=sys.stderr, flush=True),
        )
        async with history.failing(record):
            plans = await rewinder.run(request)
        rewound = sum(p.action is Action.REWIND for p in plans)
        counts: dict[str, object] = {
            "shards": len(plans),
            "rewound": rewound,
            "skipped": len(plans) - rewound,
        }
        for how in Release:
            if n := sum(p.release is how for p in plans):
                counts[str(how)] = n
        await history.finished(record, counts)
    verb = "would rewind" if request.dry_run else "rewound"
    rows = [
        [
            p.shard,
            p.owner or "(free)",
            p.checkpoint if len(p.checkpoint) <= 24 else f"…{p.checkpoint[-12:]}",
            p.first or "-",
            verb if p.action is Action.REWIND else str(p.action),
            str(p.release or "-"),
            len(p.landed),
        ]
        for p in plans
    ]
    title = (
        f"Rewind of {settings.stream_name} to {point} (id {request.rewind_id}, by {request.by})"
        + (" — dry run, nothing changed" if request.dry_run else "")
    )
    print(
        render(
            [
                "shard",
                "owner",
                "checkpoint",
                "first record at/after",
                "action",
                "owner let go",
                "chains adopted",
            ],
            rows,
            title=title,
        )
    )
    warning = nothing_new(plans, request, explicit_id=bool(args.id))
    if warning:
        print(f"\nNothing rewound: {warning}", file=sys.stderr)
        return 1
    return 0


async def _redrive(args: argparse.Namespace, settings: StreamSettings) -> int:
    registry = DatasetRegistry.from_file(settings.datasets_config)
    if args.dataset not in registry:
        raise PermanentError(
            f"dataset {args.dataset!r} is not in {settings.datasets_config} "
            f"(known: {', '.join(registry)})"
        )
    router = Router(
        registry,
        f"kinesis:{settings.stream_name}",
        settings.default_dataset,
        settings.dataset_field,
        signing_key=settings.verify_keys(),
        unsigned=settings.unsigned_envelopes,
    )
    clock = SystemClock()
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    by = args.by or default_actor()
    async with AwsClients(settings) as clients:
        lake = S3RawWriter(await clients.s3(), settings.lake_bucket)
        history = HistoryLog(lake, clock)
        what = {
            "dataset": args.dataset,
            "since": args.since,
            "until": args.until,
            "reason": args.reason,
        }
        record = history.begin(Command.REDRIVE, by, what, dry_run=args.dry_run)
        await history.started(record)
        request = RedriveRequest(
            args.dataset, since, until, args.reason, by, record.run_id, args.dry_run
        )
        async with history.failing(record):
            tally = await Redriver(lake, Rechecker(registry, router), clock).run(request)
        await history.finished(record, tally.counts())
    print(redrive_table(tally, request))
    return 0


def redrive_table(tally: Tally, request: RedriveRequest) -> str:
    """Per reason: recovered, staying, redriven earlier; and why one of each stays."""
    reasons = sorted(
        set(tally.recovered) | set(tally.stayed) | set(tally.earlier) | set(tally.curated)
    )
    rows: list[list[object]] = [
        [
            reason[:70],
            tally.recovered[reason],
            tally.stayed[reason],
            tally.earlier[reason],
            tally.curated[reason],
            tally.why.get(reason, "")[:60],
        ]
        for reason in reasons
    ]
    rows.append(
        [
            "(total)",
            sum(tally.recovered.values()),
            sum(tally.stayed.values()),
            sum(tally.earlier.values()),
            sum(tally.curated.values()),
            f"{tally.objects} quarantine objects, {tally.raw_objects} raw objects written",
        ]
    )
    verb = "would recover" if request.dry_run else "recovered"
    title = f"Redrive of {request.dataset}" + (
        " — dry run, nothing written" if request.dry_run else f" (run {request.run_id})"
    )
    return render(
        ["reason", verb, "stays", "redriven earlier", "already curated", "why it stays"],
        rows,
        title=title,
    )


async def _reprocess(args: argparse.Namespace, settings: CommonSettings) -> int:
    registry = DatasetRegistry.from_file(settings.datasets_config)
    if args.dataset not in registry:
        raise PermanentError(f"dataset {args.dataset!r} is not in {settings.datasets_config}")
    first, last = hour_folder(args.first), hour_folder(args.last)
    if first > last:
        raise PermanentError(f"--from {args.first} is after --to {args.last}")
    clock, by = SystemClock(), args.by or default_actor()
    how = args.run or ("local" if settings.aws_endpoint_url else "glue")
    if how == "glue" and not args.job:
        raise PermanentError(
            "--run glue needs the curate job's name: pass --job or set CURATE_JOB_NAME (the "
            "stack output CurateJobName, <app>-<env>-curate)"
        )
    async with AwsClients(settings) as clients:
        s3 = await clients.s3()
        lake = S3RawWriter(s3, settings.lake_bucket)
        history = HistoryLog(lake, clock)
        what = {"dataset": args.dataset, "from": first, "to": last, "run": how}
        record = history.begin(Command.REPROCESS, by, what, dry_run=args.dry_run)
        await history.started(record)
        reprocessor = Reprocessor(
            lake,
            S3BookmarkStore(s3, settings.lake_bucket),
            S3ClaimStore(s3, settings.lake_bucket),
            clock,
        )
        if args.dry_run:
            counts = await reprocessor.count(registry[args.dataset], first, last)
            print(reprocess_table(args.dataset, counts))
            return 0
        async with history.failing(record):
            forgotten = await reprocessor.forget(args.dataset, first, last)
        print(f"{args.dataset}: {forgotten} raw objects of {first}..{last} forgotten by curate")
        code, outcome = 0, "-"
        if how == "local":
            code = await _curate_now(args.dataset)
            outcome = str(code)
        elif how == "glue":
            async with history.failing(record):
                starter = GlueJobStarter(await clients.glue(), args.job)
                try:
                    run_id = await starter.start(args.dataset)
                except CurateRunInProgressError as exc:
                    busy: CurateRunInProgressError | None = exc
                else:
                    busy = None
            if busy is not None:
                start = start_command(args.job, args.dataset)
                outcome = f"not started (a curate run was in progress): {start}"
                await history.finished(record, {"raw_objects": forgotten, "curate": outcome})
                print(
                    f"{busy}. The range is forgotten but not curated yet: the next scheduled "
                    f"run curates it, or start one once the running one ends:\n  {start}",
                    file=sys.stderr,
                )
                return 1
            outcome = run_id
            print(
                f"Glue job {args.job}: run {run_id} started (curates {args.dataset}); the "
                f"command does not wait for it: watch it with aws glue get-job-run --job-name "
                f"{args.job} --run-id {run_id}"
            )
        await history.finished(record, {"raw_objects": forgotten, "curate": outcome})
    return code


async def _curate_now(dataset: str) -> int:
    """`python -m tributary_curate run --dataset D` with this environment; its exit code."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tributary_curate", "run", "--dataset", dataset
    )
    return await process.wait()


def reprocess_table(dataset: str, counts: RangeCount) -> str:
    """Per curated partition: what a reprocess would add and find."""
    rows: list[list[object]] = [
        [c.partition, c.lines, c.rows, c.would_add, c.present] for c in counts.partitions
    ]
    rows.append(
        [
            "(total)",
            sum(c.lines for c in counts.partitions),
            sum(c.rows for c in counts.partitions),
            sum(c.would_add for c in counts.partitions),
            sum(c.present for c in counts.partitions),
        ]
    )
    table = render(
        ["curated partition", "valid lines", "rows (distinct ids)", "rows to add", "rows present"],
        rows,
        title=f"Reprocess of {dataset} — dry run, nothing changed",
    )
    return (
        f"{table}\n{counts.objects} raw objects, {counts.records} records: {counts.invalid} "
        f"refused by the current registry (quarantined again), {counts.unplaced} without a "
        "partition value (quarantined)"
    )
