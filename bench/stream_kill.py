"""Part (c) of bench/stream.py: each consumer killed with SIGKILL 4 times mid-drain.

Each incarnation is a subprocess. It is killed only after it has landed its first object (so
it was reading and writing), plus a random 0-0.5 s (seeded), so the kill falls at a random
point of reading and landing; short enough that four incarnations leave records for the last
one (at 0-1 s a fast run drained the rest before the fourth kill, which then proved nothing).
After each kill the distinct records landed so far are counted; a kill counts as mid-drain
when that count grew since the previous kill and is still short of the input. Then the last
incarnation is let finish and every landed line is counted against the input. Both consumers
land batches of 500 records (ours: BATCH_MAX_RECORDS, async-kinesis: bench/ak_consumer.py).
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from tributary.aws import AwsClients
from tributary.settings import AwsSettings
from tributary_stack.inspect import wait_checkpointed
from tributary_stack.moto import MotoProcess

ROOT = Path(__file__).resolve().parents[1]
KILLS = 4
KILL_DELAY_S = 0.5  # the most a kill waits after the incarnation's first new object
BATCH = 500


def ak_process(
    aws: AwsSettings, prefix: str, checkpoint: Path, env: dict[str, str], idle_exit: float
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "ak_consumer.py"),
            aws.stream_name,
            aws.lake_bucket,
            prefix,
            str(checkpoint),
            str(idle_exit),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def ours_process(aws: AwsSettings, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tributary_stream"],
        env={
            **env,
            "STREAM_NAME": aws.stream_name,
            "LAKE_BUCKET": aws.lake_bucket,
            "LEASE_TABLE": aws.lease_table,
            "LEASE_FAILOVER_S": "2",
            "IDLE_FLUSH_S": "0.5",
            "IDLE_POLL_S": "0.2",
            "SHARD_SYNC_S": "2",
            "BATCH_MAX_RECORDS": str(BATCH),
            "DATASETS_CONFIG": str(ROOT / "config" / "datasets.yaml"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def object_count(s3: Any, bucket: str, prefix: str) -> int:
    count = 0
    async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        count += page.get("KeyCount", 0)
    return count


async def kill_mid_drain(
    proc: subprocess.Popen[bytes], s3: Any, aws: AwsSettings, prefix: str, rng: random.Random
) -> bool:
    """Kill `proc` once it has landed a new object, plus a random delay. False when it ended
    (or landed nothing in 300 s) before it could be killed that way."""
    before = await object_count(s3, aws.lake_bucket, prefix)
    deadline = time.monotonic() + 300
    while await object_count(s3, aws.lake_bucket, prefix) <= before:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return False
        await asyncio.sleep(0.1)
    await asyncio.sleep(rng.uniform(0, KILL_DELAY_S))
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


async def part_c(
    moto: MotoProcess, records: int, env: dict[str, str], bench: Any
) -> tuple[list[list[object]], dict[str, Any]]:
    """`bench` is bench/stream.py's module (fresh_stream, landed_ids, last_sequences)."""
    rows: list[list[object]] = []
    figures: dict[str, Any] = {}
    rng = random.Random(16)
    for name in ("tributary", "async-kinesis"):
        aws, sent = await bench.fresh_stream(moto, f"kill-{name.replace('-', '')}", records)
        expected = Counter(orjson.loads(s)["id"] for s in sent)
        prefix = "ak/" if name == "async-kinesis" else "raw/"
        distinct_after: list[int] = []
        killed: list[bool] = []
        with tempfile.TemporaryDirectory() as tmp:

            def start(
                name: str = name, aws: AwsSettings = aws, tmp: str = tmp, prefix: str = prefix
            ) -> subprocess.Popen[bytes]:
                if name == "async-kinesis":  # 30 s idle: outlasts a loaded moto's first read
                    return ak_process(aws, prefix, Path(tmp) / "cp.json", env, 30)
                return ours_process(aws, env)

            async with AwsClients(aws) as clients:
                s3 = await clients.s3()
                for _ in range(KILLS):
                    killed.append(await kill_mid_drain(start(), s3, aws, prefix, rng))
                    distinct_after.append(len(await bench.landed_ids(aws, prefix)))
            proc = start()
            if name == "async-kinesis":
                proc.wait(600)
            else:
                last = await bench.last_sequences(aws, len(sent))
                await wait_checkpointed(aws, last, within=600)
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            landed = await bench.landed_ids(aws, prefix)
        previous = [0, *distinct_after[:-1]]
        mid = sum(
            1
            for k, now, before in zip(killed, distinct_after, previous, strict=True)
            if k and before < now < records
        )
        lost = sum((expected - landed).values())
        duplicated = sum((landed - expected).values())
        figures[name] = {
            "killed_alive": killed,
            "distinct_landed_after_kill": distinct_after,
            "kills_mid_drain": mid,
            "lost": lost,
            "duplicated": duplicated,
        }
        rows.append(
            [
                name,
                f"{records:,}",
                f"{mid}/{KILLS}" + ("" if mid == KILLS else " (not shown)"),
                ", ".join(f"{n:,}" for n in distinct_after),
                f"{sum(landed.values()):,}",
                f"{lost:,}",
                f"{duplicated:,}",
            ]
        )
    return rows, figures
