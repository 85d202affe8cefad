"""`python -m tributary_stack rewind` against real worker processes while producers keep
sending, on moto and on kinesis-local: every record once in raw, though the stream was read
again from a point inside landed objects and from an hour ago."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import DATASETS_CONFIG, REPO, lake_settings
from tests.stream.test_wire import Fleet, landed_lines, put_load
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.clock import SystemClock, iso_utc
from tributary.s3_writer import S3RawWriter
from tributary.settings import AwsSettings
from tributary_stack.inspect import wait_checkpointed
from tributary_stack.moto import KinesisLocal, MotoServer
from tributary_stack.replay.history import HistoryLog
from tributary_stream.lease_table import DynamoDbLeaseStore


def cli_env(lake: AwsSettings) -> dict[str, str]:
    """The environment a person would run the command with (the stack's env file)."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": lake.aws_endpoint_url or "",
        "LAKE_BUCKET": lake.lake_bucket,
        "STREAM_NAME": lake.stream_name,
        "LEASE_TABLE": lake.lease_table,
        "STATE_TABLE": lake.state_table,
        "GLUE_DATABASE": lake.glue_database,
        "DATASETS_CONFIG": str(DATASETS_CONFIG),
    }
    if lake.kinesis_endpoint_url:
        env["AWS_ENDPOINT_URL_KINESIS"] = lake.kinesis_endpoint_url
    return env


def stack_cli(lake: AwsSettings, *args: str, timeout: float = 300, code: int = 0) -> str:
    """Run `python -m tributary_stack <args>`; its stdout (and stderr when `code` is not 0;
    fails on any other exit code)."""
    done = subprocess.run(
        [sys.executable, "-m", "tributary_stack", *args],
        env=cli_env(lake),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == code, done.stderr + done.stdout
    return done.stdout if code == 0 else done.stdout + done.stderr


class Producer:
    """Keeps sending envelopes in small rounds until stopped; remembers what it sent."""

    def __init__(self, lake: AwsSettings) -> None:
        self.lake = lake
        self.sent: list[bytes] = []
        self.last: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Producer:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while not self._stop.is_set():
            lines, last = await put_load(self.lake, 50, chunk=50, offset=len(self.sent))
            self.sent += lines
            for shard, seq in last.items():
                self.last[shard] = max(self.last.get(shard, 0), seq)
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


async def wait_sent(producer: Producer, count: int) -> None:
    while len(producer.sent) < count:  # noqa: ASYNC110 - the producer's own pace
        await asyncio.sleep(0.1)


async def rewind_while_sending(lake: AwsSettings, logs: Path) -> None:
    extra = {"AWS_ENDPOINT_URL_KINESIS": lake.kinesis_endpoint_url or ""}
    fleet = Fleet(lake, logs, BATCH_MAX_RECORDS="120", IDLE_FLUSH_S="0.3", **extra)
    producer = Producer(lake)
    try:
        fleet.start()
        producer.start()
        await wait_sent(producer, 600)
        middle = datetime.now(UTC)  # inside what is landing: objects straddle it
        await wait_sent(producer, 1200)
        await wait_checkpointed(lake, dict(producer.last), within=120)
        started = datetime.now(UTC)
        out = await asyncio.to_thread(stack_cli, lake, "rewind", "--to", middle.isoformat())
        windows = [(started, datetime.now(UTC))]
        assert out.count("rewound") >= 2, out  # both shards, their chains positioned
        assert out.count(" released ") == 2, out  # their owners let go when asked
        await wait_sent(producer, 1800)
        an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        dry = await asyncio.to_thread(stack_cli, lake, "rewind", "--to", an_hour_ago, "--dry-run")
        assert "would rewind" in dry, dry
        started = datetime.now(UTC)
        out = await asyncio.to_thread(stack_cli, lake, "rewind", "--to", an_hour_ago)
        windows.append((started, datetime.now(UTC)))
        assert out.count("rewound") >= 2, out
        assert out.count(" released ") == 2, out
        # The same command again changes nothing and says so (exit 1: pass a new --id) …
        again = await asyncio.to_thread(stack_cli, lake, "rewind", "--to", an_hour_ago, code=1)
        assert "rewound" not in again.split("\n", 1)[1].split("Nothing rewound")[0], again
        assert "done earlier" in again, again
        assert "pass a new --id" in again, again
        # … and the same rewind named by its id is a rerun: nothing twice, exit 0.
        same = re.search(r"\(id (\w+),", out)
        assert same, out
        rerun = await asyncio.to_thread(
            stack_cli, lake, "rewind", "--to", an_hour_ago, "--id", same[1]
        )
        assert "done earlier" in rerun, rerun
        assert "rewound" not in rerun.split("\n", 1)[1], rerun
        await wait_sent(producer, 2400)
        await producer.stop()
        await wait_checkpointed(lake, dict(producer.last), within=180)
    finally:
        if not producer._stop.is_set():
            await producer.stop()
        fleet.stop()
    landed = await landed_lines(lake)
    duplicated = {line: n for line, n in landed.items() if n > 1}
    assert not duplicated, (
        f"{len(duplicated)} records twice in raw, e.g. {next(iter(duplicated))!r}"
    )
    assert landed == Counter(producer.sent)
    async with AwsClients(lake) as clients:
        leases = await DynamoDbLeaseStore(await clients.dynamodb(), lake.lease_table).list_leases()
        store = S3RawWriter(await clients.s3(), lake.lake_bucket)
        runs = await HistoryLog(store, SystemClock()).runs()
    assert len(leases) == 2
    async with AwsClients(lake) as clients:
        rows = await (await clients.dynamodb()).scan(TableName=lake.lease_table)
    shard_rows = [r for r in rows["Items"] if not r["leaseKey"]["S"].startswith("_")]  # no _fleet
    assert len(shard_rows) == 2
    for row in shard_rows:  # who rewound it, when, to where (the last rewind)
        assert row["rewoundTo"]["S"] == iso_utc(datetime.fromisoformat(an_hour_ago))
        assert "@" in row["rewoundBy"]["S"]
        assert row["rewoundAt"]["S"].startswith(str(datetime.now(UTC).year))
        assert row["rewoundHow"]["S"] == "released"  # the worker let go: it was not fenced
        assert "rewindHold" not in row  # the hold went with the rewind
    assert all(lease.checkpoint.isdigit() for lease in leases)
    assert [(r.command, r.counts.get("rewound")) for r in runs] == [
        ("rewind", 2),
        ("rewind", 2),
        ("rewind", 0),
        ("rewind", 0),
    ]
    replayed = "".join(p.read_text() for p in sorted(logs.glob("worker-*.log")))  # noqa: ASYNC240
    assert '"checkpoint":"AT_TIMESTAMP"' in replayed  # a worker took a rewound lease
    # No zombie: the owner released when asked (2 leases, 2 rewinds), as the rows say …
    assert (
        replayed.count("released a lease for a rewind")
        + replayed.count("releasing a lease for a rewind")
        >= 4
    ), replayed[-3000:]
    # … and no worker lost a lease from a rewind's start to a few renewals after its end (a
    # fenced owner finds out at its next renewal or checkpoint).
    for log in sorted(logs.glob("worker-*.log")):  # noqa: ASYNC240
        for line in log.read_text().splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("msg") != "lease lost":
                continue
            at = datetime.fromisoformat(entry["ts"])
            assert not any(a <= at <= b + timedelta(seconds=15) for a, b in windows), (
                f"{log.name}: {line}"
            )


@pytest.mark.timeout(420)
async def test_rewind_on_moto_while_producers_send(moto: MotoServer, tmp_path: Path) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=2)
    await rewind_while_sending(lake, tmp_path)


@pytest.mark.timeout(420)
async def test_rewind_on_kinesis_local_while_producers_send(
    moto: MotoServer, tmp_path: Path
) -> None:
    with KinesisLocal() as kinesis_local:
        lake = lake_settings(moto.endpoint).model_copy(
            update={"kinesis_endpoint_url": kinesis_local.endpoint}
        )
        await bootstrap(lake, shards=2)
        await rewind_while_sending(lake, tmp_path)
