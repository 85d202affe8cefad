"""Benchmark the stream consumer, each figure beside a baseline from the same run.

(a) processing per core, in memory (bench/stream_memory.py; CPU time, median of interleaved
    rounds): the real Worker (decode, signature check, routing, batching, gzip, chain landing,
    checkpoints) on a MemoryStream of 1 KB records, beside a bare loop doing what a careful
    hand-written consumer must: read each page, decode each record to find its dataset, gzip
    each dataset's lines into an object, write it (the same in-memory writer). Other bare rows:
    the same loop checking each record's signature (HMAC-SHA256, as ours must), and the issue's
    read+gzip loop (no decode). Target ≥ 0.7× the issue's read+gzip loop; the decode loop
    is the like-for-like figure beside it.
(b) draining a pre-filled moto stream into S3 (moto), beside a bare GetRecords drain of the same
    stream (no S3, no leases) that reads every shard until it has read the known record count:
    target ratio ≥ 0.9. Ours runs twice: landing a shard's batch after IDLE_FLUSH_S of quiet,
    and with FLUSH_WHEN_CAUGHT_UP (landing on the page that finds the shard caught up).
    async-kinesis (PyPI) drains it too, landing 500-record batches in S3 the way its README
    suggests (deterministic keys, see bench/ak_consumer.py). All of them run in this process,
    each timed from making its clients until the last record is durable (ours: checkpointed;
    async-kinesis: landed; bare: read) and its clients are closed (ours: after its worker
    stopped; async-kinesis: after its consumer closed).
(c) kill -9 (bench/stream_kill.py): each consumer is killed 4 times mid-drain (each kill after
    that incarnation landed an object), restarted, let finish; every landed line is counted.

Run: `make bench` or `python bench/stream.py [--records N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]

import ak_consumer  # noqa: E402
import stream_kill  # noqa: E402
from report import Report, Table, met, save  # noqa: E402
from stream_memory import (  # noqa: E402
    IDLE_FLUSH_S,
    IDLE_POLL_S,
    SIGNING_KEY,
    envelope,
    part_a,
    worker,
)
from tributary.aws import AwsClients  # noqa: E402
from tributary.bootstrap import bootstrap  # noqa: E402
from tributary.s3_writer import S3RawWriter  # noqa: E402
from tributary.settings import AwsSettings  # noqa: E402
from tributary.table import render  # noqa: E402
from tributary_stack.inspect import read_lines  # noqa: E402
from tributary_stack.moto import MotoProcess  # noqa: E402
from tributary_stack.stack import LOCAL_CREDENTIALS  # noqa: E402
from tributary_stream.lease_table import DynamoDbLeaseStore  # noqa: E402
from tributary_stream.stream import MIN_POLL_GAP_S, KinesisStreamReader  # noqa: E402

SHARDS = 4  # the drained stream's


async def prefill(aws: AwsSettings, records: int) -> list[bytes]:
    sent: list[bytes] = []
    async with AwsClients(aws) as clients:
        kinesis = await clients.kinesis()
        for start in range(0, records, 500):
            entries: list[Any] = [
                {"Data": envelope(i), "PartitionKey": f"k{i}"}
                for i in range(start, min(records, start + 500))
            ]
            while entries:
                response = await kinesis.put_records(StreamName=aws.stream_name, Records=entries)
                retry = []
                for entry, result in zip(entries, response["Records"], strict=True):
                    (retry if "ErrorCode" in result else sent).append(
                        entry if "ErrorCode" in result else entry["Data"]
                    )
                entries = retry
    return sent


async def last_sequences(aws: AwsSettings, expected: int) -> dict[str, str]:
    """Bare drain: every shard read concurrently, each record's lines gzipped per page, until
    `expected` records are read (an empty page, or MillisBehindLatest 0, does not mean a shard
    is drained). Returns the last sequence of each shard."""
    last: dict[str, str] = {}
    read = 0
    deadline = time.monotonic() + 600
    async with AwsClients(aws) as clients:
        kinesis = await clients.kinesis()
        shards = (await kinesis.list_shards(StreamName=aws.stream_name))["Shards"]

        async def drain(shard_id: str) -> None:
            iterator = (
                await kinesis.get_shard_iterator(
                    StreamName=aws.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            nonlocal read
            while read < expected:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bare drain read {read:,} of {expected:,} records")
                page = await kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                if page["Records"]:
                    last[shard_id] = page["Records"][-1]["SequenceNumber"]
                    read += len(page["Records"])
                    gzip.compress(b"".join(r["Data"] + b"\n" for r in page["Records"]), 6)
                else:
                    await asyncio.sleep(0.05)  # this shard is read; others may not be
                iterator = page["NextShardIterator"]

        await asyncio.gather(*(drain(s["ShardId"]) for s in shards))
    return last


class CountingReader:
    """The worker's KinesisStreamReader, noting when it has read `expected` records."""

    def __init__(self, inner: KinesisStreamReader, expected: int) -> None:
        self.inner, self.expected, self.read = inner, expected, 0
        self.pages = 0  # answers that held records
        self.all_read_at: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_records(self, iterator: str, limit: int) -> Any:
        page = await self.inner.get_records(iterator, limit)
        self.read += len(page.records)
        self.pages += bool(page.records)
        if self.all_read_at is None and self.read >= self.expected:
            self.all_read_at = time.perf_counter()
        return page


class ObservedLeaseStore(DynamoDbLeaseStore):
    """The worker's lease store, noting when its first take succeeded and when each shard's
    checkpoint reached `last`: a checkpoint call returns only once DynamoDB has stored it, so
    this observes the drain without a watcher scanning the lease table on the same moto the
    drain reads from (a bare drain pays for no observer either)."""

    def __init__(self, db: Any, table: str, last: dict[str, str]) -> None:
        super().__init__(db, table)
        self.last = last
        self.first_take_at: float | None = None
        self.reached: set[str] = set()
        self.all_checkpointed = asyncio.Event()

    async def take(self, lease: Any, owner: str) -> Any:
        taken = await super().take(lease, owner)
        if taken is not None and self.first_take_at is None:
            self.first_take_at = time.perf_counter()
        return taken

    async def checkpoint(self, lease: Any, checkpoint: str, landed: Any) -> Any:
        stored = await super().checkpoint(lease, checkpoint, landed)
        target = self.last.get(lease.key)
        if stored is not None and target is not None and _at_least(checkpoint, target):
            self.reached.add(lease.key)
            if self.reached >= set(self.last):
                self.all_checkpointed.set()
        return stored


async def run_ours(
    aws: AwsSettings, last: dict[str, str], expected: int, flush_when_caught_up: bool = False
) -> dict[str, float]:
    """Seconds from making the worker's clients until every shard is checkpointed at `last`,
    the worker stopped and its clients closed (the bare drain's time ends when its clients are
    closed, async-kinesis's when its consumer and clients are), and its phases: clients made,
    first lease taken, every record read (the last GetRecords), every shard checkpointed, the
    worker stopped, the clients closed. The first lease and the checkpoints are observed through
    the worker's own store calls (ObservedLeaseStore), the last record read through its reader
    (CountingReader), the stop and the close around `await task` and the clients' context; the
    lease table is read afterwards with clients of its own, untimed, to confirm every checkpoint
    is there."""
    started = time.perf_counter()
    async with AwsClients(aws) as clients:
        reader = CountingReader(
            KinesisStreamReader(await clients.kinesis(), aws.stream_name), expected
        )
        store = ObservedLeaseStore(await clients.dynamodb(), aws.lease_table, last)
        w = worker(
            store,
            reader,
            S3RawWriter(await clients.s3(), aws.lake_bucket),
            flush_when_caught_up=flush_when_caught_up,
        )
        clients_at = time.perf_counter()
        stop = asyncio.Event()
        task = asyncio.create_task(w.run(stop))
        try:
            await asyncio.wait_for(store.all_checkpointed.wait(), 600)
        except TimeoutError:
            raise TimeoutError("the worker did not checkpoint every record in 600 s") from None
        checkpointed = time.perf_counter()
        stop.set()
        await task
        stopped = time.perf_counter()
    closed = time.perf_counter()
    async with AwsClients(aws) as clients:
        leases = await DynamoDbLeaseStore(await clients.dynamodb(), aws.lease_table).list_leases()
    if not _checkpointed(leases, last):
        raise RuntimeError("the lease table does not hold the checkpoints the worker wrote")
    first_lease_at = store.first_take_at or checkpointed
    all_read = reader.all_read_at or checkpointed
    return {
        "seconds": closed - started,
        "clients_s": clients_at - started,
        "first_lease_s": first_lease_at - started,
        "reading_s": all_read - first_lease_at,
        "read_to_checkpoint_s": checkpointed - all_read,
        "stop_s": stopped - checkpointed,
        "close_s": closed - stopped,
        "pages_with_records": reader.pages,
    }


def _at_least(checkpoint: str, sequence: str) -> bool:
    return checkpoint.isdigit() and int(checkpoint) >= int(sequence)


def _checkpointed(leases: list[Any], last: dict[str, str]) -> bool:
    by_key = {lease.key: lease for lease in leases}
    return all(
        shard in by_key and _at_least(by_key[shard].checkpoint, sequence)
        for shard, sequence in last.items()
    )


async def landed_ids(aws: AwsSettings, prefix: str) -> Counter[str]:
    return Counter(
        orjson.loads(line)["id"]
        for lines in (await read_lines(aws, prefix)).values()
        for line in lines
    )


async def fresh_stream(
    moto: MotoProcess, name: str, records: int
) -> tuple[AwsSettings, list[bytes]]:
    aws = AwsSettings.model_validate(
        {
            "AWS_ENDPOINT_URL": moto.endpoint,
            "STREAM_NAME": name,
            "LAKE_BUCKET": f"{name}-lake",
            "LEASE_TABLE": f"{name}-l",
            "STATE_TABLE": f"{name}-s",
            "GLUE_DATABASE": name.replace("-", "_"),
        }
    )
    await bootstrap(aws, shards=SHARDS)
    return aws, await prefill(aws, records)


async def part_b(
    moto: MotoProcess, records: int, env: dict[str, str], rounds: int
) -> tuple[list[list[object]], dict[str, Any]]:
    """The same pre-filled stream drained `rounds` times by each, after a warm-up round that is
    not counted; the rounds run the four in the orders of a balanced Latin square (every four
    rounds, each drain runs once in each place and once right after each other); medians. Ours
    gets a fresh bucket and lease table every run, async-kinesis a fresh prefix and checkpoint.
    Every run's landed lines and objects are counted."""
    aws, sent = await fresh_stream(moto, "drain", records)
    size = sum(len(s) for s in sent) / 1e6
    last = await last_sequences(aws, len(sent))  # untimed: where ours must checkpoint to
    keys = ("bare", "ours", "caught_up", "ak")
    times: dict[str, list[float]] = {k: [] for k in keys}
    phases: dict[str, list[dict[str, float]]] = {"ours": [], "caught_up": []}
    # per run: (lines landed, distinct records landed, objects)
    landed: dict[str, list[tuple[int, int, int]]] = {"ours": [], "caught_up": [], "ak": []}

    async def count(key: str, settings: AwsSettings, prefix: str) -> None:
        objects = await read_lines(settings, prefix)
        ids = Counter(orjson.loads(line)["id"] for lines in objects.values() for line in lines)
        landed[key].append((sum(ids.values()), len(ids), len(objects)))

    async def bare_run(n: int) -> None:
        started = time.perf_counter()
        if await last_sequences(aws, len(sent)) != last:
            raise RuntimeError("the bare drain read another stream than before")
        times["bare"].append(time.perf_counter() - started)

    async def ours_run(n: int, key: str) -> None:
        ours_aws = aws.model_copy(
            update={"lake_bucket": f"drain-{key}-{n}", "lease_table": f"drain-{key}-l{n}"}
        )
        await bootstrap(ours_aws, shards=SHARDS)  # the stream exists: a new bucket and lease table
        gc.collect()
        phase = await run_ours(ours_aws, last, len(sent), key == "caught_up")
        phases[key].append(phase)
        times[key].append(phase["seconds"])
        await count(key, ours_aws, "raw/")

    async def ak_run(n: int) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            gc.collect()
            started = time.perf_counter()
            await ak_consumer.consume(
                aws.stream_name,
                aws.lake_bucket,
                f"ak{n}/",
                Path(tmp) / "cp.json",
                60,
                endpoint=moto.endpoint,
                expected=len(sent),
            )
            times["ak"].append(time.perf_counter() - started)
        await count("ak", aws, f"ak{n}/")

    runs = {
        "bare": bare_run,
        "ours": partial(ours_run, key="ours"),  # landing after IDLE_FLUSH_S of quiet
        "caught_up": partial(ours_run, key="caught_up"),  # FLUSH_WHEN_CAUGHT_UP
        "ak": ak_run,
    }
    # A Williams design for 4: 0 1 3 2, each row the one before plus 1 (mod 4).
    first = (0, 1, 3, 2)
    for n in range(rounds + 1):  # round 0 warms every path up (first calls, moto's tables)
        for index in first:
            key = keys[(index + n) % len(keys)]
            # Each drain starts on a collected heap in this process: the garbage the one
            # before left here (tens of thousands of records) is not collected inside the next
            # one's timing (moto, a process of its own, collects when it does).
            gc.collect()
            await runs[key](n)
    warm_up = {k: v.pop(0) for k, v in times.items()}  # round 0: not counted
    for measured in (*phases.values(), *landed.values()):
        measured.pop(0)
    bare, ours, caught_up, ak = (statistics.median(times[k]) for k in keys)
    # each round's own ratio, beside the ratio of the medians
    round_ratios = {
        k: [b / o for b, o in zip(times["bare"], times[k], strict=True)]
        for k in ("ours", "caught_up", "ak")
    }

    def vs_bare(key: str) -> str:
        low, high = min(round_ratios[key]), max(round_ratios[key])
        return f"{bare / statistics.median(times[key]):.2f} (rounds {low:.3f}–{high:.3f})"

    def lines(key: str) -> str:
        totals = sorted({total for total, _, _ in landed[key]})
        duplicated = max(total - distinct for total, distinct, _ in landed[key])
        missing = max(len(sent) - distinct for _, distinct, _ in landed[key])
        spread = f"{totals[0]:,}" if len(totals) == 1 else f"{totals[0]:,}–{totals[-1]:,}"
        return (
            f"{spread} in each of {len(landed[key])} runs (at most {missing:,} missing, "
            f"{duplicated:,} duplicated in a run)"
        )

    def objects(key: str) -> str:
        return f"{statistics.median(o for _, _, o in landed[key]):,.0f}"

    rows: list[list[object]] = [
        [
            "bare GetRecords drain",
            f"{bare:.1f}",
            f"{records / bare:,.0f}",
            f"{size / bare:.1f}",
            "1.00 (baseline)",
            "-",
            "-",
        ],
        [
            f"tributary → S3 (exactly once), landing after IDLE_FLUSH_S {IDLE_FLUSH_S:g} s idle",
            f"{ours:.1f}",
            f"{records / ours:,.0f}",
            f"{size / ours:.1f}",
            vs_bare("ours"),
            lines("ours"),
            objects("ours"),
        ],
        [
            "tributary → S3 (exactly once), FLUSH_WHEN_CAUGHT_UP",
            f"{caught_up:.1f}",
            f"{records / caught_up:,.0f}",
            f"{size / caught_up:.1f}",
            vs_bare("caught_up"),
            lines("caught_up"),
            objects("caught_up"),
        ],
        [
            "async-kinesis → S3",
            f"{ak:.1f}",
            f"{records / ak:,.0f}",
            f"{size / ak:.1f}",
            vs_bare("ak"),
            lines("ak"),
            objects("ak"),
        ],
    ]
    figures = {
        "seconds": times,
        "warm_up_seconds": warm_up,
        "ratio": bare / ours,
        "ratio_caught_up": bare / caught_up,
        "round_ratios": round_ratios,
        "landed_lines_distinct_objects": landed,
        "phases": phases,
        "phase_medians": {
            key: {k: statistics.median(p[k] for p in runs) for k in runs[0] if k != "seconds"}
            for key, runs in phases.items()
        },
    }
    return rows, figures


def idle_landing(idle_flush_s: float, idle_poll_s: float) -> float:
    """Seconds from a shard's last record to the poll that lands its batch at IDLE_FLUSH_S, by
    the consumer's poll timing (an idle poll every `idle_poll_s`; when the flush falls due
    before the next one, a poll when it is due, no sooner than MIN_POLL_GAP_S after the last)."""
    at = idle_poll_s  # the first empty poll after the last short page
    while at < idle_flush_s:
        due_in = idle_flush_s - at
        at += max(due_in, MIN_POLL_GAP_S) if due_in < idle_poll_s else idle_poll_s
    return at


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--memory-records", type=int, default=100_000)
    parser.add_argument(
        "--rounds", type=int, default=8, help="interleaved rounds of (b): a multiple of 4"
    )
    parser.add_argument("--memory-rounds", type=int, default=5, help="interleaved rounds of (a)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "stream.json")
    args = parser.parse_args()
    if args.rounds % 4:
        parser.error("--rounds must be a multiple of 4 (the drains' order is a 4×4 Latin square)")
    os.environ.update(LOCAL_CREDENTIALS)
    machine = f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}"
    load_start = os.getloadavg()
    a, a_fig = asyncio.run(part_a(args.memory_records, args.memory_rounds))
    a_table = Table(
        f"(a) in memory: {args.memory_records:,} records of 1 KB on 4 shards, CPU time, median "
        f"of {args.memory_rounds} interleaved rounds",
        [
            "(a) processing",
            "MB/s per core",
            "records/s",
            "vs bare (decode)",
            "per round",
            "vs bare read+gzip",
            "× a shard's 2 MB/s",
        ],
        a,
    )
    print(render(a_table.headers, a_table.rows, title=f"\nStream consumer; {machine}"))
    with MotoProcess() as moto:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": moto.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LOG_LEVEL": "WARNING",
            "METRICS_INTERVAL_S": "3600",
            "ENVELOPE_SIGNING_KEY": SIGNING_KEY,
        }
        b, b_fig = asyncio.run(part_b(moto, args.records, env, args.rounds))
        b_table = Table(
            f"(b) drain a pre-filled moto stream: {args.records:,} records of 1 KB, {SHARDS} "
            f"shards, median of {args.rounds} interleaved rounds after a warm-up round",
            ["(b) drain", "seconds", "records/s", "MB/s", "vs bare", "lines landed", "objects"],
            b,
        )
        print(render(b_table.headers, b_table.rows, title=f"\n{b_table.title}"))
        c, c_fig = asyncio.run(stream_kill.part_c(moto, args.records, env, sys.modules[__name__]))
        c_table = Table(
            f"(c) each consumer killed with SIGKILL {stream_kill.KILLS} times while draining "
            f"{args.records:,} records (batches of {stream_kill.BATCH}), each kill after the "
            f"incarnation's first landed object + a random 0-{stream_kill.KILL_DELAY_S:g} s, "
            "restarted, let finish",
            [
                "(c) kill -9",
                "input",
                "kills mid-drain",
                "distinct landed after each kill",
                "landed",
                "lost",
                "duplicated",
            ],
            c,
        )
        print(render(c_table.headers, c_table.rows, title=f"\n{c_table.title}"))
    load_end = os.getloadavg()

    memory_ratio = a_fig["ratio"]
    low, high = min(a_fig["ratio_rounds"]), max(a_fig["ratio_rounds"])
    median_cpu = a_fig["median_cpu_s"]
    ours_mb, bare_mb = a_fig["mb"] / median_cpu["ours"], a_fig["mb"] / median_cpu["bare"]
    drain_ratio, caught_up_ratio = b_fig["ratio"], b_fig["ratio_caught_up"]
    phase, caught_up_phase = (b_fig["phase_medians"][k] for k in ("ours", "caught_up"))
    read_all = phase["first_lease_s"] + phase["reading_s"]
    caught_up_read_all = caught_up_phase["first_lease_s"] + caught_up_phase["reading_s"]
    bare_s, ours_s, caught_up_s = (
        statistics.median(b_fig["seconds"][k]) for k in ("bare", "ours", "caught_up")
    )
    ours_k, ak_k = c_fig["tributary"], c_fig["async-kinesis"]
    shown = ours_k["kills_mid_drain"] == stream_kill.KILLS
    # The target is against the issue's bare loop (read, gzip, write: no decode); the decode
    # loop (what a consumer that routes by dataset cannot skip) is the like-for-like one beside.
    issue_ratio = a_fig["ratio_vs_gzip"]
    issue_low, issue_high = (f(a_fig["ratio_vs_gzip_rounds"]) for f in (min, max))
    gzip_mb = a_fig["mb"] / median_cpu["bare_gzip"]
    memory_met = met(issue_ratio >= 0.7) + (
        f" (borderline: rounds {issue_low:.3f}–{issue_high:.3f})"
        if issue_ratio >= 0.7 > issue_low
        else ""
    )
    caught_up_rounds = b_fig["round_ratios"]["caught_up"]
    below = sum(r < 0.9 for r in caught_up_rounds)
    caught_up_met = met(caught_up_ratio >= 0.9) + (
        f" (borderline: {below} of {len(caught_up_rounds)} rounds below, rounds "
        f"{min(caught_up_rounds):.3f}–{max(caught_up_rounds):.3f})"
        if caught_up_ratio >= 0.9 and below
        else ""
    )
    pages = {
        k: statistics.median(p["pages_with_records"] for p in b_fig["phases"][k])
        for k in ("ours", "caught_up")
    }
    notes = [
        f"Machine load average (1 min) {load_start[0]:.1f} at the start, {load_end[0]:.1f} at "
        "the end of this benchmark (2 cores): wall-clock figures in (b) and (c) move with it.",
        f"Per core the worker processes {ours_mb / 2:,.1f}× what one shard delivers (2 MB/s). "
        f"Against the issue's bare read+gzip loop (no decode) ours is at "
        f"{a_fig['ratio_vs_gzip']:.2f}×; the bare loop that also checks signatures runs at "
        f"{median_cpu['bare'] / median_cpu['bare_verify']:.2f}× the decode loop, and ours at "
        f"{median_cpu['bare_verify'] / median_cpu['ours']:.2f}× it. Ours vs the decode loop per "
        f"round: {', '.join(f'{r:.2f}' for r in a_fig['ratio_rounds'])}.",
        "(a) profile of one untimed run of the worker (own time, share of its busy time): "
        + "; ".join(a_fig["profile"])
        + "."
        + f" Target ≥ 0.7× the issue's bare loop {'met' if issue_ratio >= 0.7 else 'not met'}"
        + (" (borderline: a round below)" if issue_ratio >= 0.7 > issue_low else "")
        + f" in this run (median {issue_ratio:.3f}, rounds {issue_low:.3f}–{issue_high:.3f}); "
        f"against the decode loop {memory_ratio:.3f} (rounds {low:.3f}–{high:.3f}). "
        "What ours does per record: a signed API envelope is routed on a fast path that "
        "decodes only the fields routing needs (a msgspec Struct of v, dataset, id, source, "
        "received_at; `data` skipped, not built), checks the signature on the record's own "
        "bytes (no copy) and cuts its line from them with arrived_at in place of the "
        "signature; anything else takes the slow path (the whole record decoded, as the bare "
        "loop does). The page loop cuts batches inline (age as a deadline) and keeps the "
        "page's target list at hand. Before that: the keyed HMAC made once per key, cached "
        "arrival text and targets, record ids only when needed, no landed-map lookups past "
        "the checkpoint, no deaggregation of plain records."
        + " What would go further (the ratio moves with the host: the section's CPU is in its "
        "heading): building each target's NDJSON body from the raw bytes rather than a Line "
        "object per record (the lander, processing and quarantine all take Lines), and the "
        "Record objects the reader makes (user_records, in the bare loops too).",
        f"(b) ours' drain in phases (medians): clients made {phase['clients_s']:.2f} s, first "
        f"lease taken at {phase['first_lease_s']:.2f} s, every record read at {read_all:.2f} s "
        f"(the bare drain took {bare_s:.2f} s in all, its clients closed: {bare_s / read_all:.2f}× "
        "to that point), "
        f"then {phase['read_to_checkpoint_s']:.2f} s from the last record read to every shard "
        f"checkpointed, {phase['stop_s']:.2f} s to stop the worker (its leases released) and "
        f"{phase['close_s']:.2f} s to close its clients, ours {ours_s:.2f} s in all (each phase "
        "a median over the rounds; every drain's time ends with its clients closed)."
        + (
            " That tail (landing, checkpoints, the stop's lease releases, the close) is where "
            "ours loses"
            if bare_s / read_all >= 0.9
            else " Ours loses both in the reading and in that tail (landing, checkpoints, the "
            "stop's lease releases, the close)"
        )
        + ". Most of it is the idle wait: a consumer of "
        "a live stream cannot know its last record, so it lands a shard's batch once the shard "
        f"has been idle IDLE_FLUSH_S ({IDLE_FLUSH_S:g} s here, seen at polls IDLE_POLL_S "
        f"{IDLE_POLL_S:g} s apart), then writes the checkpoint; the bare drain stops at the "
        "count it was told."
        + (
            f" At IDLE_FLUSH_S the target ≥ 0.9 is {'met' if drain_ratio >= 0.9 else 'not met'} "
            f"({drain_ratio:.2f}): after the last short page the consumer polls IDLE_POLL_S "
            "later, and a batch lands at the first empty poll at least IDLE_FLUSH_S after its "
            "shard's last record, no poll coming sooner than 0.2 s after the one before: by "
            "that schedule (polls taken as instant; a slow one moves the next) the poll "
            f"{idle_landing(IDLE_FLUSH_S, IDLE_POLL_S):g} s after the last record; then it is "
            "put and checkpointed. A shorter idle flush alone does not remove the "
            "wait for that poll."
        ),
        "(b) with FLUSH_WHEN_CAUGHT_UP (an opt-in setting, off by default) a shard's batch "
        "lands on the page that finds the shard caught up (fewer Kinesis records than asked "
        "for and MillisBehindLatest 0, an empty page too), with no idle wait: every record "
        "read at "
        f"{caught_up_read_all:.2f} s, then {caught_up_phase['read_to_checkpoint_s']:.2f} s to "
        f"every shard checkpointed, {caught_up_phase['stop_s']:.2f} s to stop and "
        f"{caught_up_phase['close_s']:.2f} s to close, {caught_up_s:.2f} s in all, "
        f"{caught_up_ratio:.2f}× the bare "
        f"drain (target ≥ 0.9 {'met' if caught_up_ratio >= 0.9 else 'not met'}; rounds "
        f"{', '.join(f'{r:.3f}' for r in caught_up_rounds)}). "
        + (
            f"This is the setting's best case: the {SHARDS} shards' records came in "
            f"{pages['caught_up']:g} pages with records in all (median; {pages['ours']:g} at "
            "IDLE_FLUSH_S), one a shard, so both settings land the same objects (the table's "
            "objects column) and differ only in the idle tail. "
            if pages["caught_up"] == pages["ours"] == SHARDS
            else f"The {SHARDS} shards' records came in {pages['caught_up']:g} pages with "
            f"records in all (median; {pages['ours']:g} at IDLE_FLUSH_S): each such page "
            "caught up lands an object per target (the table's objects column). "
        )
        + "Its cost "
        "is not measured here: on a live stream the consumer keeps up, and then every poll "
        "that reads a record lands an object per target and writes a checkpoint (one a shard "
        "every IDLE_POLL_S) where IDLE_FLUSH_S and the BATCH_MAX_* limits gather them into "
        "larger objects; it is for producers that want the least latency, not the fewest "
        "objects. The kill -9 run (c) uses the default (idle flush).",
        f"(c) distinct records landed after each kill: ours "
        f"{', '.join(f'{n:,}' for n in ours_k['distinct_landed_after_kill'])}; async-kinesis "
        f"{', '.join(f'{n:,}' for n in ak_k['distinct_landed_after_kill'])} of "
        f"{args.records:,}. "
        f"Kills mid-drain: ours {ours_k['kills_mid_drain']}/{stream_kill.KILLS}, async-kinesis "
        f"{ak_k['kills_mid_drain']}/{stream_kill.KILLS}"
        + ("." if shown else "; the 0 / 0 claim is not shown by this run."),
        "async-kinesis acknowledges a record when the next one is requested, before the "
        "user's batch is durable: a kill between its checkpoint and the batch write can "
        "lose records; a replay resumes at its checkpoint, not at a batch boundary, and a "
        "batch it cuts differently gets another content key, so its records land twice: "
        f"{ak_k['lost']:,} lost and {ak_k['duplicated']:,} duplicated in this run "
        "(bench/ak_consumer.py says why content is the key it was given).",
    ]
    for note in notes:
        print(f"- {note}")
    save(
        Report(
            name="stream",
            setup=(
                "(a) The real Worker (decode, signature check, routing, batching, gzip, chain "
                "landing, checkpoints) on an in-memory stream, beside a bare loop doing what a "
                "careful hand-written consumer must (read each page, decode each record for its "
                "dataset, gzip each dataset's lines into one object, write it to the same "
                "in-memory writer), the same bare loop checking each signature, and the issue's "
                "bare read+gzip loop (no decode); CPU time, median of interleaved rounds. "
                "(b) Draining a pre-filled moto stream into S3 (moto) with leases and "
                "checkpoints (ours twice: batches landing after IDLE_FLUSH_S of quiet, and with "
                "FLUSH_WHEN_CAUGHT_UP), beside a bare GetRecords drain of the same stream (no S3, "
                "no leases) that reads until it has the known record count, and "
                "async-kinesis (PyPI) landing 500-record batches in S3 as its README suggests, "
                "with deterministic keys (the SHA-256 of each batch); all in this process, "
                "each timed from making its clients until its last record is durable and its "
                "clients are closed (ours after its worker stopped), median of interleaved "
                "rounds. "
                "(c) " + (stream_kill.__doc__ or "").split("\n\n")[1].replace("\n", " ")
            ),
            tables=[a_table, b_table, c_table],
            headline=[
                [
                    "stream consumer",
                    "MB/s per core, in memory (1 KB records)",
                    f"{ours_mb:,.1f}",
                    f"{gzip_mb:,.1f} (the issue's bare read, gzip, write: no decode); "
                    f"like-for-like {bare_mb:,.1f} (bare read, decode, gzip, write)",
                    f"{issue_ratio:.3f} vs the issue's bare loop (rounds {issue_low:.3f}–"
                    f"{issue_high:.3f}); {memory_ratio:.3f} like-for-like (rounds {low:.3f}–"
                    f"{high:.3f})",
                    "≥ 0.7× the bare loop",
                    memory_met,
                ],
                [
                    "stream consumer",
                    "drain moto → S3, exactly once, vs a bare GetRecords drain; batches land "
                    f"after IDLE_FLUSH_S {IDLE_FLUSH_S:g} s idle",
                    f"{b[1][2]} records/s",
                    f"{b[0][2]} records/s",
                    f"{drain_ratio:.2f}",
                    "≥ 0.9",
                    met(drain_ratio >= 0.9),
                ],
                [
                    "stream consumer",
                    "the same drain, batches landing once the shard is caught up "
                    "(FLUSH_WHEN_CAUGHT_UP, opt-in)",
                    f"{b[2][2]} records/s",
                    f"{b[0][2]} records/s",
                    f"{caught_up_ratio:.2f}",
                    "≥ 0.9",
                    caught_up_met,
                ],
                [
                    "stream consumer",
                    f"records lost / duplicated after {stream_kill.KILLS} × kill -9 "
                    f"(kills mid-drain: {ours_k['kills_mid_drain']}/{stream_kill.KILLS})",
                    f"{ours_k['lost']:,} / {ours_k['duplicated']:,}",
                    f"{ak_k['lost']:,} / {ak_k['duplicated']:,} (async-kinesis)",
                    "—",
                    "0 / 0",
                    met(shown and ours_k["lost"] == 0 and ours_k["duplicated"] == 0)
                    + ("" if shown else " (not shown: a kill was not mid-drain)"),
                ],
            ],
            notes=notes,
        )
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"a": a, "b": b, "c": c, "a_figures": a_fig, "b_figures": b_fig, "c_figures": c_fig},
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
