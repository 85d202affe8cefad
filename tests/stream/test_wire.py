"""Stream-consumer workers as they run in production (`python -m tributary_stream`) on moto:
several workers and shards, then kill -9 over and over during a 100k-record load."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import orjson
import pytest

from tests.conftest import DATASETS_CONFIG, REPO, lake_settings
from tests.stream.conftest import SIGNING_KEY, envelope, without_arrival
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.envelope import verify_envelope
from tributary.settings import AwsSettings
from tributary_stack.faultproxy import FaultProxy
from tributary_stack.inspect import read_lines, wait_checkpointed
from tributary_stack.moto import MotoProcess, MotoServer
from tributary_stack.process import ManagedProcess
from tributary_stream.lease_table import DynamoDbLeaseStore


class Fleet:
    """Worker subprocesses with their logs in a temp folder."""

    def __init__(self, lake: AwsSettings, logs: Path, **env: str) -> None:
        self._env = {
            **os.environ,
            "AWS_ENDPOINT_URL": lake.aws_endpoint_url or "",
            "LAKE_BUCKET": lake.lake_bucket,
            "STREAM_NAME": lake.stream_name,
            "LEASE_TABLE": lake.lease_table,
            "DATASETS_CONFIG": str(DATASETS_CONFIG),
            "LEASE_FAILOVER_S": "3",
            "SHARD_SYNC_S": "5",
            "IDLE_FLUSH_S": "0.5",
            "IDLE_POLL_S": "1",
            "BATCH_MAX_RECORDS": "1000",
            "METRICS_INTERVAL_S": "3600",
            "AWS_MAX_ATTEMPTS": "5",
            "ENVELOPE_SIGNING_KEY": SIGNING_KEY.decode(),
            **env,
        }
        self._logs = logs
        self.workers: list[ManagedProcess] = []
        self._files: list[IO[str]] = []
        self.started = 0

    def start(self) -> ManagedProcess:
        self.started += 1
        log = (self._logs / f"worker-{self.started}.log").open("w")
        self._files.append(log)
        worker = ManagedProcess.python_module(
            f"w{self.started}",
            "tributary_stream",
            [],
            {**self._env, "WORKER_ID": f"worker-{self.started}"},
            log,
        ).start()
        self.workers.append(worker)
        return worker

    def kill9(self, worker: ManagedProcess) -> None:
        worker.signal(signal.SIGKILL)
        worker.stop(timeout=5)
        self.workers.remove(worker)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=30)
        for f in self._files:
            f.close()


async def put_load(
    lake: AwsSettings, count: int, chunk: int = 500, offset: int = 0
) -> tuple[list[bytes], dict[str, int]]:
    """PutRecords `count` envelopes; returns them and the last sequence number per shard."""
    lines: list[bytes] = []
    last: dict[str, int] = {}
    async with AwsClients(lake) as clients:
        kinesis = await clients.kinesis()
        for start in range(offset, offset + count, chunk):
            batch = [
                envelope("posts" if i % 4 else "events", f"r{i}", {"i": i, "pad": "x" * 100})
                for i in range(start, min(offset + count, start + chunk))
            ]
            entries: list[Any] = [
                {"Data": d, "PartitionKey": f"user-{i % 97}"} for i, d in enumerate(batch, start)
            ]
            while entries:
                response = await kinesis.put_records(StreamName=lake.stream_name, Records=entries)
                failed = []
                for entry, result in zip(entries, response["Records"], strict=True):
                    if "ErrorCode" in result:
                        failed.append(entry)
                    else:
                        lines.append(verify_envelope(entry["Data"], SIGNING_KEY) or b"")
                        shard = result["ShardId"]
                        last[shard] = max(last.get(shard, 0), int(result["SequenceNumber"]))
                entries = failed
    return lines, last


async def wait_owned(lake: AwsSettings, owner: str, count: int, within: float = 60) -> None:
    """Until `owner` holds `count` leases."""
    deadline = time.monotonic() + within
    async with AwsClients(lake) as clients:
        store = DynamoDbLeaseStore(await clients.dynamodb(), lake.lease_table)
        while sum(lease.owner == owner for lease in await store.list_leases()) < count:
            assert time.monotonic() < deadline, f"{owner} never held {count} leases"
            await asyncio.sleep(0.2)


async def landed_lines(lake: AwsSettings) -> Counter[bytes]:
    landed = (await read_lines(lake, "raw/")).values()
    return Counter(without_arrival(line) for lines in landed for line in lines)


async def test_workers_share_shards_and_land_everything_once(
    moto: MotoServer, tmp_path: Path
) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=4)
    fleet = Fleet(lake, tmp_path)
    try:
        for _ in range(3):
            fleet.start()
        lines, last = await put_load(lake, 12_000)
        await wait_checkpointed(lake, last, within=120)
    finally:
        fleet.stop()
    assert await landed_lines(lake) == Counter(lines)
    async with AwsClients(lake) as clients:
        leases = await DynamoDbLeaseStore(await clients.dynamodb(), lake.lease_table).list_leases()
    assert len(leases) == 4
    assert all(lease.owner is None for lease in leases)  # released on SIGTERM


@pytest.mark.slow
@pytest.mark.timeout(600)  # a load test: ~1 min here (4.5 before moto's Kinesis was made linear)
async def test_kill_9_during_a_100k_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(42)
    with MotoProcess() as moto:
        lake = lake_settings(moto.endpoint)
        await bootstrap(lake, shards=4)
        fleet = Fleet(lake, tmp_path)
        kills = 0
        try:
            for _ in range(3):
                fleet.start()
            load = asyncio.create_task(put_load(lake, 100_000))
            while not load.done() or kills < 8:
                await asyncio.sleep(rng.uniform(2.5, 4.5))
                fleet.kill9(rng.choice(fleet.workers))
                kills += 1
                fleet.start()
            lines, last = await load
            await wait_checkpointed(lake, last, within=300)
        finally:
            fleet.stop()
        landed = await landed_lines(lake)
    missing = Counter(lines) - landed
    duplicated = landed - Counter(lines)
    assert (len(lines), kills) >= (100_000, 8)
    assert not missing, f"{sum(missing.values())} records lost"
    assert not duplicated, f"{sum(duplicated.values())} records duplicated"


async def test_zombie_after_a_pause_and_an_s3_outage_duplicate_nothing(
    moto: MotoServer, tmp_path: Path
) -> None:
    """SIGSTOP a worker past its failover (its leases are taken), SIGCONT it: its fenced writes
    fail and it stops those shards. Meanwhile S3 refuses writes for a while. Exactly once."""
    with FaultProxy(moto.endpoint) as proxy:
        lake = lake_settings(moto.endpoint)
        await bootstrap(lake, shards=4)
        via_proxy = lake.model_copy(update={"aws_endpoint_url": proxy.endpoint})
        fleet = Fleet(via_proxy, tmp_path)
        try:
            zombie = fleet.start()
            lines, last = await put_load(lake, 3_000)
            await wait_owned(lake, "worker-1", 4)  # it really holds the leases it will lose
            # ... and consumes them: with a leader, a lease is assigned (owned in the table)
            # before the worker's own take starts its consumer.
            log = tmp_path / "worker-1.log"
            for _ in range(120):
                if log.read_text().count('"msg":"lease taken"') >= 4:
                    break
                await asyncio.sleep(0.25)
            zombie.signal(signal.SIGSTOP)
            fleet.start()
            more, more_last = await put_load(lake, 3_000, offset=3_000)
            # Failover: the second worker takes every lease. Waiting for it, not a fixed sleep:
            # on a loaded machine its start-up can eat the pause, and a zombie woken before the
            # takeover simply renews the leases it still holds.
            await wait_owned(lake, "worker-2", 4)
            proxy.faults.down = {"s3"}
            zombie.signal(signal.SIGCONT)  # wakes up holding stale leases and buffers
            during, during_last = await put_load(lake, 2_000, offset=6_000)
            await asyncio.sleep(3)
            proxy.faults.down = set()
            more += during
            for ends in (more_last, during_last):
                last = {k: max(last.get(k, 0), ends.get(k, 0)) for k in {*last, *ends}}
            await wait_checkpointed(lake, last, within=120)
            # On a loaded machine the woken zombie may notice its last lost leases only now.
            log = tmp_path / "worker-1.log"
            for _ in range(60):
                if log.read_text().count('"reason":"LEASE_LOST"') >= 4:
                    break
                await asyncio.sleep(0.5)
        finally:
            fleet.stop()
    assert proxy.injected["s3.down"] > 0
    zombie_log = (tmp_path / "worker-1.log").read_text()
    assert zombie_log.count('"reason":"LEASE_LOST"') == 4  # fenced out of every shard it held
    assert await landed_lines(lake) == Counter(lines + more)


async def health(health_file: Path, max_age_s: float) -> int:
    """Exit status of the container's health-check command."""
    check = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tributary_stream.health",
        env={
            **os.environ,
            "STREAM_HEALTH_FILE": str(health_file),
            "STREAM_HEALTH_MAX_AGE_S": str(max_age_s),
        },
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await check.wait()


async def test_a_failing_processor_neither_kills_the_worker_nor_stops_raw(
    moto: MotoServer, tmp_path: Path
) -> None:
    """The production entry point with a processor that raises for every fifth record: the
    process lives on, raw gets everything, the failures are quarantined with the exception."""
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=2)
    table = f"items-{lake.lease_table}"
    async with AwsClients(lake) as clients:
        await (await clients.dynamodb()).create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    fleet = Fleet(
        lake,
        tmp_path,
        STREAM_PROCESSOR="tests.stream.processors:explode_on_fives",
        STREAM_ITEMS_TABLE=table,
        PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    )
    try:
        worker = fleet.start()
        lines, last = await put_load(lake, 1_000)
        await wait_checkpointed(lake, last, within=120)
        assert worker.poll() is None, (tmp_path / "worker-1.log").read_text()
    finally:
        fleet.stop()
    assert await landed_lines(lake) == Counter(lines)
    failures = [
        orjson.loads(line)
        for lines_ in (await read_lines(lake, "quarantine/")).values()
        for line in lines_
    ]
    assert sorted(int(f["id"][1:]) for f in failures) == list(range(0, 1_000, 5))
    assert failures[0]["errors"][0]["message"].startswith(
        "STREAM_PROCESSOR raised ZeroDivisionError: record r"
    )
    async with AwsClients(lake) as clients:
        scan = await (await clients.dynamodb()).scan(TableName=table, Select="COUNT")
    assert scan["Count"] == 800


async def test_the_health_check_fails_while_the_worker_is_hung(
    moto: MotoServer, tmp_path: Path
) -> None:
    """SIGSTOP stands for a blocked event loop: the health file stops being touched, the
    container's check fails; SIGCONT and it passes again."""
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=2)
    health_file = tmp_path / "health"
    fleet = Fleet(lake, tmp_path, STREAM_HEALTH_FILE=str(health_file))  # failover 3 s
    assert await health(health_file, 3) == 1  # no file: no worker has renewed anything
    try:
        worker = fleet.start()
        await wait_owned(lake, "worker-1", 2)
        for _ in range(50):
            if await health(health_file, 3) == 0:
                break
            await asyncio.sleep(0.2)
        assert await health(health_file, 3) == 0
        worker.signal(signal.SIGSTOP)
        await asyncio.sleep(4)
        assert await health(health_file, 3) == 1
        worker.signal(signal.SIGCONT)
        for _ in range(50):
            if await health(health_file, 3) == 0:
                break
            await asyncio.sleep(0.2)
        assert await health(health_file, 3) == 0
    finally:
        fleet.stop()
