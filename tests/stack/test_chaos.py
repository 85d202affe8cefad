"""Chaos over the whole pipeline. While producers keep POSTing, the API and the stream consumers
are killed with SIGKILL and restarted, and a fault proxy between the services and the embedded
AWS makes Kinesis drop entries and go down, then S3 go down. Then the curate job is killed -9
after it published and before its bookmark (the Glue catalog is down meanwhile), and runs again.
Verified against the producers' own log: every record the API acknowledged is in curated Parquet
exactly once, every record it rejected is in quarantine, and nothing else is in curated."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson
import pytest

from tests.stack.conftest import stack_settings
from tributary.aws import AwsClients
from tributary.settings import AwsSettings
from tributary_stack.demo import run_curate
from tributary_stack.inspect import read_lines, read_parquet, wait_consumed
from tributary_stack.process import ManagedProcess
from tributary_stack.stack import LocalStack

BATCH = 100


@dataclass
class ProducerLog:
    """What producers were told, appended to a file as it happens (one JSON line per answer)."""

    path: Path
    acked: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)
    retries: Counter[str] = field(default_factory=Counter)

    def record(self, request: str, answer: dict[str, Any], records: list[dict[str, Any]]) -> None:
        bad = {e["index"] for e in answer["errors"]}
        ids = [r["id"] for i, r in enumerate(records) if i not in bad]
        assert answer["ids"] == [str(i) for i in ids]  # the producer's id field is the id
        self.acked.update(ids)
        self.rejected.update(records[i]["id"] for i in bad)
        with self.path.open("ab") as f:
            f.write(orjson.dumps({"request": request, "acked": ids}) + b"\n")


def batch_records(n: int) -> list[dict[str, Any]]:
    """Batch `n`: 100 posts with ids n*100+1…; every fifth batch starts with an invalid one."""
    records = [
        {"userId": 1 + (n + i) % 50, "id": n * BATCH + i + 1, "title": f"t{n}", "body": "b" * 200}
        for i in range(BATCH)
    ]
    if n % 5 == 0:
        records[0]["userId"] = 0  # below the schema's minimum
    return records


async def produce(api_url: str, api_key: str, log: ProducerLog, stop: asyncio.Event) -> None:
    """Two producers POST batches until `stop`; each retries a batch (same Idempotency-Key)
    until the API answers it, as a well-behaved client does on 5xx and broken connections."""
    numbers = itertools.count()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    async def producer() -> None:
        async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as client:
            while not stop.is_set():
                n = next(numbers)
                records = batch_records(n)
                body, key = orjson.dumps(records), f"chaos-{n}"
                while True:
                    try:
                        response = await client.post(
                            "/v1/datasets/posts/records",
                            content=body,
                            headers={"Idempotency-Key": key},
                        )
                    except httpx.TransportError as exc:
                        log.retries[type(exc).__name__] += 1
                        await asyncio.sleep(0.2)
                        continue
                    if response.status_code in (202, 422):
                        log.record(key, response.json(), records)
                        await asyncio.sleep(0.4)  # paced: ~400 records/s, so the test stays short
                        break
                    assert response.status_code in (429, 503), response.text
                    log.retries[str(response.status_code)] += 1
                    await asyncio.sleep(0.2)

    await asyncio.gather(*(producer() for _ in range(2)))


async def chaos(stack: LocalStack, out: TextIO) -> None:
    """The schedule of crashes and faults, one every few seconds, while load runs."""
    assert stack.proxy is not None
    faults = stack.proxy.faults

    def say(what: str) -> None:
        out.write(f"chaos     | {time.strftime('%H:%M:%S')} {what}\n")
        out.flush()

    async def kill9(*names: str) -> None:
        for name in names:
            say(f"kill -9 {name}")
            stack.kill9(name)
        await asyncio.sleep(1)
        for name in names:
            say(f"restart {name}")
            await asyncio.to_thread(stack.start_service, name)

    async def fault(what: str, seconds: float, on: Callable[[], None]) -> None:
        say(f"{what} for {seconds}s")
        on()
        await asyncio.sleep(seconds)
        faults.down = set()
        faults.put_records_fail_fraction = 0.0
        say(f"{what}: over")

    def kinesis_partial() -> None:
        faults.put_records_fail_fraction = 0.3

    def down(service: str) -> Callable[[], None]:
        return lambda: setattr(faults, "down", {service})

    steps: list[Callable[[], Awaitable[None]]] = [
        lambda: kill9("stream-1"),
        lambda: fault("Kinesis PutRecords partial failures", 3, kinesis_partial),
        lambda: fault("Kinesis down", 3, down("kinesis")),
        lambda: kill9("api"),
        lambda: fault("S3 down", 4, down("s3")),
        lambda: kill9("stream-1", "stream-2"),
        lambda: kill9("api"),
    ]
    for step in steps:
        await asyncio.sleep(2.5)
        await step()
    await asyncio.sleep(2.5)


def kill_curate_after_publish(stack: LocalStack, out: TextIO) -> None:
    """Run the curate job while the Glue catalog is down, and kill -9 it once its first curated
    file is published: it is then stuck before its bookmark (catalog first, bookmark last)."""
    assert stack.proxy is not None
    aws = stack.aws_settings()

    async def keys(prefix: str) -> list[str]:
        async with AwsClients(aws) as clients:
            listing = await (await clients.s3()).list_objects_v2(
                Bucket=aws.lake_bucket, Prefix=prefix
            )
        return [o["Key"] for o in listing.get("Contents", [])]

    stack.proxy.faults.down = {"glue"}
    curate = ManagedProcess.python_module(
        "curate",
        "tributary_curate",
        ["run", "--dataset", "posts"],
        # a short claim: the rerun below finds the killed run's claim expired
        {**os.environ, **stack.env, "CURATE_CLAIM_TTL_S": "3"},
        out,
    ).start()
    try:
        deadline = time.monotonic() + 240
        while not asyncio.run(keys("curated/posts/")) and curate.poll() is None:
            assert time.monotonic() < deadline, "curate published nothing within 240 s"
            time.sleep(0.2)
        curate.signal(signal.SIGKILL)
    finally:
        curate.stop(timeout=5)
        stack.proxy.faults.down = set()
    assert asyncio.run(keys("curated/posts/")), "the crashed run published nothing"
    bookmark = "_state/curate/posts/bookmark.json"
    assert not asyncio.run(keys(bookmark)), "the crashed run moved its bookmark"
    time.sleep(3)  # the killed run's claim expires (the rerun would otherwise exit 3, busy)


def raw_ids(aws: AwsSettings) -> set[int]:
    lines = asyncio.run(read_lines(aws, "raw/posts/"))
    return {int(orjson.loads(line)["id"]) for batch in lines.values() for line in batch}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_and_aws_outages_across_the_pipeline_lose_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    log = ProducerLog(tmp_path / "producer.ndjson")
    settings = stack_settings(tmp_path, shards=4, consumers=2)
    with (
        (tmp_path / "services.log").open("w") as out,
        LocalStack(
            settings, out=out, log_level="WARNING", moto_process=True, fault_proxy=True
        ) as stack,
    ):
        assert stack.proxy is not None

        async def load_under_chaos() -> None:
            stop = asyncio.Event()
            load = asyncio.create_task(produce(stack.api_url, settings.api_key, log, stop))
            try:
                await chaos(stack, out)
            finally:
                stop.set()
                await load

        took: dict[str, float] = {}
        started = time.monotonic()
        asyncio.run(load_under_chaos())
        took["load"] = time.monotonic() - started
        aws = stack.aws_settings()
        in_stream = {int(r.envelope.id) for r in asyncio.run(wait_consumed(aws, within=180))}
        in_raw = raw_ids(aws)
        took["drain"] = time.monotonic() - started - sum(took.values())
        kill_curate_after_publish(stack, out)
        took["curate killed"] = time.monotonic() - started - sum(took.values())
        counts = run_curate(stack)
        took["curate"] = time.monotonic() - started - sum(took.values())
        curated = Counter(
            int(i)
            for table in asyncio.run(read_parquet(aws, "curated/posts/")).values()
            for i in table.column("_id").to_pylist()
        )
        quarantined = Counter(
            orjson.loads(line)["data"]["id"]
            for lines in asyncio.run(read_lines(aws, "quarantine/posts/")).values()
            for line in lines
        )
        injected = dict(stack.proxy.injected)

    # The producers' own log on disk is the reference.
    acked: set[int] = set()
    for line in log.path.read_bytes().splitlines():
        acked.update(orjson.loads(line)["acked"])
    assert acked == log.acked
    assert len(acked) >= 2_000, len(acked)  # the load really ran through the chaos
    missing = acked - set(curated)
    duplicated = {i: n for i, n in curated.items() if n > 1}
    unexpected = set(curated) - acked
    assert not missing, (
        f"{len(missing)} acknowledged records missing from curated: "
        f"{len(missing - in_stream)} not in the stream, {len(missing - in_raw)} not in raw"
    )
    assert not duplicated, f"{len(duplicated)} records duplicated in curated"
    assert not unexpected, f"{len(unexpected)} records in curated that nobody acknowledged"
    assert log.rejected <= set(quarantined), "rejected records missing from quarantine"
    assert counts["posts"]["quarantined"] == 0
    # The chaos really happened: every fault fired and producers had to retry through it.
    for fault in ("kinesis.down", "s3.down", "kinesis.put_records_entry"):
        assert injected.get(fault), f"{fault} never fired: {injected}"
    assert sum(log.retries.values()) > 0, log.retries
    print(
        f"acked {len(acked)}, rejected {len(log.rejected)}, retries {dict(log.retries)}, "
        f"injected {injected}, "
        f"seconds { ({k: round(v, 1) for k, v in took.items()}) }"
    )
