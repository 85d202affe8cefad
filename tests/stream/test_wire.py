"""Stream-consumer workers as they run in production (`python -m tributary_stream`) on moto:
several workers and shards, then kill -9 over and over during a 100k-record load."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import DATASETS_CONFIG, lake_settings
from tests.stream.conftest import SIGNING_KEY, envelope, without_arrival
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.envelope import verify_envelope
from tributary.settings import AwsSettings
from tributary_stack.faultproxy import FaultProxy
from tributary_stack.inspect import read_lines, wait_checkpointed
from tributary_stack.moto import MotoProcess, MotoServer
from tributary_stack.process import ManagedProcess
from tributary_stream.lease import DynamoDbLeaseStore


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
