"""`python -m tributary_stack reprocess` as a process on moto with the real curate job: a day
of raw curated again (one curated file deleted first: the dry run counts its rows to add and
the run adds them back), then once killed half way (the whole process group, Spark included,
after the bookmark moved and curate took its claim) and run again: curated and quarantine as
they were, and only that day's raw objects were curated again."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.conftest import DATASETS_CONFIG, REPO
from tests.curate.lake import envelope, land, post
from tests.stack.test_redrive import curate
from tests.stack.test_rewind import cli_env, stack_cli
from tributary.aws import AwsClients
from tributary.s3_writer import S3RawWriter
from tributary.settings import AwsSettings
from tributary_stack.inspect import read_objects, read_parquet
from tributary_stack.process import ManagedProcess

DAY = datetime(2026, 11, 30, tzinfo=UTC)


async def land_days(lake: AwsSettings) -> int:
    """Raw objects over 24 hours of DAY and 3 hours of the day before; duplicates across
    objects and invalid lines among them. Returns the number of DAY's objects."""
    async with AwsClients(lake) as clients:
        writer = S3RawWriter(await clients.s3(), lake.lake_bucket)
        n = 0
        for day, hours in ((DAY.replace(day=29), range(21, 24)), (DAY, range(24))):
            for hour in hours:
                at = day.replace(hour=hour)
                for part in range(2):
                    ids = [n * 10 + i for i in range(10)]
                    got = at.strftime("%Y-%m-%dT%H:%M:%S.000000Z")  # curated by _received_at
                    lines = [envelope("posts", str(i), post(i), got) for i in ids]
                    lines.append(envelope("posts", str(ids[0] - 5), post(max(ids[0] - 5, 1)), got))
                    lines.append(envelope("posts", f"bad{n}", {"id": "not a number"}, got))
                    await land(writer, "posts", at, f"b{hour:02d}{part}", lines)
                    n += 1
    return 48


def snapshot(lake: AwsSettings) -> tuple[Counter[str], dict[str, bytes]]:
    tables = asyncio.run(read_parquet(lake, "curated/posts/"))
    ids = Counter(str(i) for t in tables.values() for i in t.column("_id").to_pylist())
    return ids, asyncio.run(read_objects(lake, "quarantine/posts/"))


async def delete_one_curated_file(lake: AwsSettings) -> set[str]:
    """Delete one curated file of 2026-11-30; the ids it held."""
    tables = await read_parquet(lake, "curated/posts/year=2026/month=11/day=30/")
    key, table = sorted(tables.items())[0]
    async with AwsClients(lake) as clients:
        await (await clients.s3()).delete_object(Bucket=lake.lake_bucket, Key=key)
    return {str(i) for i in table.column("_id").to_pylist()}


def last_run(lake: AwsSettings) -> dict[str, object]:
    body = asyncio.run(read_objects(lake, "_state/curate/posts/bookmark.json"))
    doc = orjson.loads(next(iter(body.values())))
    return dict(doc["last_run"])


@pytest.mark.timeout(900)
def test_reprocess_a_day_twice_and_killed_leaves_curated_unchanged(
    lake: AwsSettings, tmp_path: Path
) -> None:
    in_day = asyncio.run(land_days(lake))
    work, logs = tmp_path / "work", tmp_path / "curate.log"
    curate(lake, DATASETS_CONFIG, work, logs)
    ids, quarantine = snapshot(lake)
    assert max(ids.values()) == 1
    assert len(quarantine) == 54  # one per raw object (each has an invalid line)
    args = ["reprocess", "--dataset", "posts", "--from", "2026-11-30T00", "--to", "2026-11-30T23"]
    dry = stack_cli(lake, *args, "--dry-run")
    day30 = next(line for line in dry.splitlines() if "year=2026/month=11/day=30" in line)
    assert "day=29" not in dry  # per curated partition: the range holds only the 30th
    # 48 objects x 11 valid lines; 480 ids + id 55 (first curated on the 29th): all present
    assert day30.split()[1:] == ["528", "481", "0", "481"], dry

    lost = asyncio.run(delete_one_curated_file(lake))  # a day=30 file: its rows must come back
    assert lost
    dry = stack_cli(lake, *args, "--dry-run")
    day30 = next(line for line in dry.splitlines() if "year=2026/month=11/day=30" in line)
    to_add = int(day30.split()[3])
    assert to_add == len(lost), dry  # distinct ids, as curate counts them

    env = {**cli_env(lake), "CURATE_WORK_DIR": str(work)}  # the default claim: no stall loses it
    stack_cli_env(env, *args)
    assert last_run(lake)["raw_objects"] == in_day  # that day's objects, no others
    assert last_run(lake)["curated"] == len(lost) == to_add  # the lost rows, once each
    assert snapshot(lake) == (ids, quarantine)

    # Killed half way: after the bookmark forgot the day, while curate (Spark) runs.
    before = last_run(lake)
    with (tmp_path / "killed.log").open("w") as out:
        short = {**env, "CURATE_CLAIM_TTL_S": "3"}  # the killed run's claim expires soon
        killed = ManagedProcess.python_module(
            "reprocess", "tributary_stack", args, short, out
        ).start()
        deadline = time.monotonic() + 120
        while "forgotten" not in (tmp_path / "killed.log").read_text():
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        while not asyncio.run(read_objects(lake, "_state/curate/posts/claim")):
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # curate has started: its claim is held
        killed.kill()
        killed.stop(timeout=5)
    assert last_run(lake) == before  # the killed curate run did not finish
    time.sleep(4)  # its claim (3 s) runs out
    stack_cli_env(env, *args)
    assert last_run(lake)["raw_objects"] == in_day
    assert snapshot(lake) == (ids, quarantine)
    status = stack_cli(lake, "status")
    assert status.count("reprocess") >= 3, status  # 2 finished runs and the killed one
    assert "not finished" in status


def stack_cli_env(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tributary_stack", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout
