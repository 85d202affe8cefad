"""`make demo`: the whole pipeline once, end to end, on the embedded stack; exits 0 when it adds up.

Producers POST valid and invalid records (JSON, a retried request, gzip NDJSON) to the API, which
puts them on Kinesis; two stream-consumer workers land them in raw. The importer pulls the fake
third-party API into raw. The curate job (Spark) promotes raw to curated Parquet, and DuckDB
queries it. Each hop is checked: every accepted record is in raw as often as it was accepted,
every rejected one in quarantine, every imported one in raw, and curated holds each valid id
exactly once. A summary table per dataset and the wall time per stage close the run.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from tributary.aws import AwsClients
from tributary.dataset import DatasetRegistry
from tributary.envelope import Envelope
from tributary.layout import Zone
from tributary.table import render
from tributary_curate.bookmark import S3BookmarkStore
from tributary_importer.source import load_sources
from tributary_stack import samples
from tributary_stack.demo_tables import show_tables
from tributary_stack.demo_vendors import richer_vendors, served_by_fake
from tributary_stack.inspect import read_lines, wait_consumed
from tributary_stack.orphans import popen
from tributary_stack.stack import LocalStack
from tributary_stack.status import quality_table


@dataclass
class Tally:
    """What the producers were told, per dataset."""

    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    ids: set[str] = field(default_factory=set)


def _requests() -> list[tuple[str, str, dict[str, str], bytes]]:
    """(label, dataset, headers, body) of every request the demo makes."""
    posts = samples.posts(100)
    bad_posts: list[Any] = [
        {"userId": 1, "id": 101, "title": "no body"},
        {"userId": "eleven", "id": 102, "title": "t", "body": "b"},
        {"userId": 1, "id": 103, "title": "ok", "body": "valid one among the bad"},
        "not an object",
    ]
    events: list[Any] = samples.events(50)
    events[7] = {"props": {"n": 7}}  # no type
    events[21] = {"type": ""}  # empty type
    ndjson = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events))
    json_headers = {"Content-Type": "application/json"}
    return [
        (
            "100 posts",
            "posts",
            {**json_headers, "Idempotency-Key": "demo-posts-1"},
            orjson.dumps(posts),
        ),
        (
            "same request, retried",
            "posts",
            {**json_headers, "Idempotency-Key": "demo-posts-1"},
            orjson.dumps(posts),
        ),
        (
            "mixed valid/invalid",
            "posts",
            {**json_headers, "Idempotency-Key": "demo-posts-2"},
            orjson.dumps({"records": bad_posts}),
        ),
        (
            "50 events, gzip NDJSON",
            "events",
            {
                "Content-Type": "application/x-ndjson",
                "Content-Encoding": "gzip",
                "Idempotency-Key": "demo-events-1",
            },
            ndjson,
        ),
    ]


def post_all(stack: LocalStack) -> tuple[dict[str, Tally], list[list[object]]]:
    """Make the demo's requests; returns tallies per dataset and a row per request."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    rows: list[list[object]] = []
    auth = {"Authorization": f"Bearer {stack.settings.api_key}"}
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        for label, dataset, headers, body in _requests():
            response = client.post(
                f"/v1/datasets/{dataset}/records", content=body, headers={**auth, **headers}
            )
            result = response.json()
            if response.status_code not in (202, 422):
                raise RuntimeError(f"{label}: HTTP {response.status_code} {result}")
            tally = tallies[dataset]
            tally.requests += 1
            tally.accepted += result["accepted"]
            tally.rejected += result["rejected"]
            tally.ids.update(result["ids"])
            first_error = result["errors"][0] if result["errors"] else None
            rows.append(
                [
                    label,
                    dataset,
                    response.status_code,
                    result["accepted"],
                    result["rejected"],
                    f"#{first_error['index']} {first_error['field']}: {first_error['message']}"
                    if first_error
                    else "",
                ]
            )
    return tallies, rows


def run_importer(stack: LocalStack) -> dict[str, int]:
    """`python -m tributary_importer run --once` against the fake API: records per source."""
    counts = {}
    for line in _cli(stack, "tributary_importer", "run", "--once", timeout=300).splitlines():
        match = re.match(r"^(\w+): (\d+) new records", line)
        if match:
            counts[match[1]] = int(match[2])
    return counts


def _cli(stack: LocalStack, module: str, *args: str, timeout: float = 600) -> str:
    """Run a service's command line with the stack's environment; its stdout."""
    child = popen(  # dies with the demo, even by SIGKILL
        [sys.executable, "-m", module, *args],
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"{module} {args[0]} failed ({child.returncode}): {err}")
    out_text: str = out
    return out_text


def run_curate(stack: LocalStack) -> dict[str, dict[str, int]]:
    """`python -m tributary_curate run` (Spark local): its counts per dataset."""
    out = _cli(stack, "tributary_curate", "run")
    print("\nraw → curate (Spark) → curated Parquet\n" + out.rstrip())
    counts = {}
    for line in out.splitlines()[2:]:
        cells = line.split()
        names = ["run", "raw_objects", "lines", "curated", "duplicates", "filtered", "quarantined"]
        counts[cells[0]] = dict(zip(names, map(int, cells[1:8]), strict=True))
    return counts


def query_curated(stack: LocalStack, datasets: list[str]) -> dict[str, tuple[int, int]]:
    """DuckDB over the curated zone: (rows, distinct ids) per dataset."""
    sql = " union all ".join(
        f"select '{d}' as dataset, count(*) as rows, count(distinct _id) as ids from {d}"
        for d in datasets
    )
    out = _cli(stack, "tributary_curate", "query", sql + " order by dataset")
    print("\ncurated (DuckDB): " + sql.split(" union all ")[0].replace(datasets[0], "<dataset>"))
    print(out.rstrip())
    found = {}
    for line in out.splitlines()[2:]:
        name, rows, ids = line.split()
        found[name] = (int(rows), int(ids))
    return found


def run(stack: LocalStack) -> int:
    """Run the demo against a started stack; 0 when everything adds up."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    tallies, rows = post_all(stack)
    timings["producers → API → Kinesis"] = time.monotonic() - started
    print(
        render(
            ["request", "dataset", "status", "accepted", "rejected", "first error"],
            rows,
            title="\nProducers → API",
        )
    )
    aws = stack.aws_settings()
    started = time.monotonic()
    stream = asyncio.run(wait_consumed(aws, within=120))
    timings["Kinesis → consumer → raw (catch-up)"] = time.monotonic() - started
    quarantine = asyncio.run(read_lines(aws, f"{Zone.QUARANTINE}/"))
    in_stream = Counter(r.envelope.dataset for r in stream)
    started = time.monotonic()
    run_end = datetime.now(UTC)  # no later than the importer's run start (the windows' end)
    imported = run_importer(stack)
    timings["third-party API → importer → raw"] = time.monotonic() - started
    raw = asyncio.run(read_lines(aws, f"{Zone.RAW}/"))
    raw_lines: Counter[str] = Counter()
    raw_ids: dict[str, set[str]] = defaultdict(set)
    raw_ids_all: dict[str, set[str]] = defaultdict(set)
    valid_ids: dict[str, set[str]] = defaultdict(set)  # what curate must keep, once each
    registry = DatasetRegistry.from_file(Path(stack.env["DATASETS_CONFIG"]))
    curated_rows: list[list[object]] = []
    from_importer: Counter[str] = Counter()
    importer_ids: dict[str, set[str]] = defaultdict(set)  # by source: every run on this stack
    partitions: Counter[tuple[str, str]] = Counter()
    objects: Counter[tuple[str, str]] = Counter()
    for key, lines in raw.items():
        dataset, partition = key.split("/")[1], "/".join(key.split("/")[2:6])
        objects[(dataset, partition)] += 1
        partitions[(dataset, partition)] += len(lines)
        for line in lines:
            envelope = Envelope.from_json(line)
            raw_ids_all[dataset].add(envelope.id)
            if registry[dataset].validator.is_valid(envelope.data):
                valid_ids[dataset].add(envelope.id)
            if envelope.source.startswith("importer:"):
                from_importer[envelope.source.split(":", 1)[1]] += 1
                importer_ids[envelope.source.split(":", 1)[1]].add(envelope.id)
                continue
            raw_lines[dataset] += 1
            raw_ids[dataset].add(envelope.id)
    quarantined: Counter[str] = Counter()
    for key, lines in quarantine.items():
        quarantined[key.split("/")[1]] += len(lines)
    print(
        render(
            ["dataset", "partition", "objects", "records"],
            [[d, p, objects[(d, p)], n] for (d, p), n in sorted(partitions.items())],
            title="\nRaw objects (stream consumer and importer)",
        )
    )
    ok = True
    summary = []
    for dataset, tally in sorted(tallies.items()):
        good = (
            in_stream[dataset] == tally.accepted == raw_lines[dataset]
            and len(raw_ids[dataset]) == len(tally.ids)
            and quarantined[dataset] == tally.rejected
        )
        ok &= good
        summary.append(
            [
                dataset,
                tally.requests,
                tally.accepted,
                tally.rejected,
                in_stream[dataset],
                raw_lines[dataset],
                len(raw_ids[dataset]),
                quarantined[dataset],
                "ok" if good else "MISMATCH",
            ]
        )
    print(
        render(
            [
                "dataset",
                "requests",
                "accepted",
                "rejected",
                "in stream",
                "in raw",
                "distinct ids",
                "quarantined",
                "check",
            ],
            summary,
            title="\nWhat landed from the API",
        )
    )
    rows_imported = []
    for source, count in sorted(imported.items()):
        good = from_importer[source] == count
        ok &= good
        rows_imported.append([source, count, from_importer[source], "ok" if good else "MISMATCH"])
    print(
        render(
            ["source", "imported", "in raw", "check"],
            rows_imported,
            title="\nThird-party API → importer → raw",
        )
    )
    # issue 20: one source of each richer kind, exactly as many as the fake API serves it
    declared = load_sources(Path(stack.env["SOURCES_CONFIG"]), {**os.environ, **stack.env})
    specs = {name: source.spec for name, source in declared.items()}
    served = served_by_fake(stack.env["FAKEAPI_URL"], run_end, specs)
    landed_ids = {source: len(ids) for source, ids in importer_ids.items()}
    incremental = {name: spec.incremental is not None for name, spec in specs.items()}
    vendors = richer_vendors(served, imported, dict(from_importer), landed_ids, incremental)
    ok &= all(str(row[-1]).startswith("ok") for row in vendors)
    print(
        render(
            ["source", "kind", "served", "imported", "ids in raw", "check"],
            vendors,
            title="\nRicher vendors (config/sources.yaml, fake API variants)",
        )
    )
    started = time.monotonic()
    curated = {d: c for d, c in run_curate(stack).items() if d in registry}  # not derived tables
    timings["raw → curate job → curated"] = time.monotonic() - started
    started = time.monotonic()
    queried = query_curated(stack, sorted(curated))
    timings["curated → DuckDB query"] = time.monotonic() - started
    for dataset, c in sorted(curated.items()):
        in_duckdb, ids = queried.get(dataset, (0, 0))
        good = in_duckdb == ids == c["curated"] == len(valid_ids[dataset])
        ok &= good
        curated_rows.append(
            [
                dataset,
                len(raw_ids_all[dataset]),
                len(valid_ids[dataset]),
                c["curated"],
                c["duplicates"],
                c["quarantined"],
                in_duckdb,
                "ok" if good else "MISMATCH",
            ]
        )
    print(
        render(
            [
                "dataset",
                "ids in raw",
                "valid ids",
                "curated",
                "duplicates dropped",
                "quarantined",
                "rows in DuckDB",
                "check",
            ],
            curated_rows,
            title="\nraw → curated, exactly once",
        )
    )
    ok &= show_tables(lambda sql: _cli(stack, "tributary_curate", "query", "--no-sync", sql))
    ok &= show_quality(stack, registry)
    datasets = sorted({*tallies, *imported, *curated})
    raw_objects: Counter[str] = Counter()
    for (dataset, _), n in objects.items():
        raw_objects[dataset] += n
    print(
        render(
            [
                "dataset",
                "records in",
                "accepted",
                "rejected",
                "raw objects",
                "curated rows",
                "quarantined",
            ],
            [
                [
                    d,
                    tallies[d].accepted + tallies[d].rejected + imported.get(d, 0),
                    tallies[d].accepted + imported.get(d, 0),
                    tallies[d].rejected,
                    raw_objects[d],
                    curated.get(d, {}).get("curated", 0),
                    quarantined[d] + curated.get(d, {}).get("quarantined", 0),
                ]
                for d in datasets
            ],
            title="\nSummary (records in = POSTed + imported; accepted into raw; quarantined by "
            "the API or the curate job)",
        )
    )
    print(
        render(
            ["stage", "seconds"],
            [[k, f"{v:.2f}"] for k, v in timings.items()],
            title="\nWall time per stage",
        )
    )
    print(
        "\nA retried request (same Idempotency-Key) carries the same ids: raw holds it twice, "
        "the curate job's dedupe by id keeps it once. Try: python -m tributary_curate query "
        '"select * from posts limit 5" (with the stack\'s environment: make up).'
    )
    print("\ndemo: " + ("OK" if ok else "FAILED: counts do not add up"))
    return 0 if ok else 1


def show_quality(stack: LocalStack, registry: DatasetRegistry) -> bool:
    """The curate run's data-quality results (`quality:` in the registry), from the bookmarks;
    False when a `block` rule stopped a dataset's run."""
    aws = stack.aws_settings()

    async def read() -> str:
        async with AwsClients(aws) as clients:
            bookmarks = S3BookmarkStore(await clients.s3(), aws.lake_bucket)
            return await quality_table(bookmarks, registry)

    text = asyncio.run(read())
    print(text)
    return "BLOCKED" not in text


def main(stack: LocalStack, log_path: Path) -> int:
    """Start the stack, run the demo, stop the stack."""
    print(f"starting the embedded stack (service logs: {log_path})", flush=True)
    with stack:
        print(f"embedded AWS at {stack.moto.endpoint}, API at {stack.api_url}")
        return run(stack)
