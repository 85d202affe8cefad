"""Curate runs as real processes on moto with CURATE_STAGING=s3 (the Glue staging path): two
runs of one dataset at once never duplicate a row; a run finding a live claim exits 3 at once
having written nothing; SIGTERM (which stops a run in seconds) releases the claim; a SIGKILLed
run's claim expires and the rerun curates each record once."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import DATASETS_CONFIG, lake_settings
from tests.curate.lake import envelope, land
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary.s3_writer import S3RawWriter
from tributary.settings import AwsSettings, CommonSettings
from tributary_curate.claim import Claim, S3ClaimStore
from tributary_stack.moto import MotoServer
from tributary_stack.status import status

HOUR = datetime(2026, 3, 1, 12, tzinfo=UTC)
ROWS = 20


def comment(i: int) -> dict[str, Any]:
    return {"postId": 1 + i % 3, "id": i, "email": f"u{i}@example.com", "body": f"comment {i}"}


class Lake:
    def __init__(
        self, aws: AwsSettings, env: dict[str, str], writer: S3RawWriter, claims: S3ClaimStore
    ) -> None:
        self.aws, self.env, self.writer, self.claims = aws, env, writer, claims

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tributary_curate", "run", *args],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its Spark JVM is killed with it (the process group)
        )

    def start_overlapping(self, barrier: Path, *args: str) -> subprocess.Popen[str]:
        """A run that waits at `barrier` after reading its bookmark (tests/curate/overlap.py)."""
        return self.start_hooked("overlap.py", str(barrier), "run", *args)

    def start_hooked(self, hook: str, *args: str) -> subprocess.Popen[str]:
        """`python tests/curate/<hook> <args…>`: the curate command with a test's patch."""
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name(hook)), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    async def ids(self, dataset: str) -> list[str]:
        ids: list[str] = []
        for key in await self.writer.keys(f"curated/{dataset}/"):
            table = pq.read_table(io.BytesIO(await self.writer.get(key)), columns=["_id"])
            ids += table.column("_id").to_pylist()
        return ids

    async def wait_for_claim(self, dataset: str, process: subprocess.Popen[str]) -> Claim:
        for _ in range(1200):
            claim = await self.claims.read(dataset)
            if claim is not None:
                return claim
            assert process.poll() is None, process.communicate()
            await asyncio.sleep(0.05)
        raise AssertionError("no claim appeared")


async def finish(process: subprocess.Popen[str], within: float = 300) -> tuple[int, str]:
    try:
        _out, err = await asyncio.to_thread(process.communicate, timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _out, err = process.communicate()
        raise AssertionError(f"still running after {within:.0f}s:\n{err[-3000:]}") from None
    return process.returncode, err


@pytest.fixture
async def lake(moto: MotoServer, tmp_path: Path) -> AsyncIterator[Lake]:
    aws = lake_settings(moto.endpoint)
    await bootstrap(aws, shards=1)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "LAKE_BUCKET": aws.lake_bucket,
        "GLUE_DATABASE": aws.glue_database,
        "DATASETS_CONFIG": str(DATASETS_CONFIG),
        "CURATE_WORK_DIR": str(tmp_path / "work"),
        "CURATE_STAGING": "s3",
        "CURATE_DRIVER_MEMORY": "1g",
        "LOG_LEVEL": "WARNING",
    }
    async with AwsClients(aws) as clients:
        s3 = await clients.s3()
        writer = S3RawWriter(s3, aws.lake_bucket)
        lines = [envelope("comments", str(i), comment(i)) for i in range(1, ROWS + 1)]
        await land(writer, "comments", HOUR, "b1", lines)
        yield Lake(aws, env, writer, S3ClaimStore(s3, aws.lake_bucket))


@pytest.mark.timeout(600)
async def test_two_runs_at_once_never_duplicate_a_row(lake: Lake, tmp_path: Path) -> None:
    """Forced to overlap: each run waits after reading its bookmark until both have (or one has
    ended), so without a claim both would curate the same raw objects (40 rows for 20)."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    runs = [lake.start_overlapping(barrier, "--dataset", "comments") for _ in range(2)]
    for _ in range(2400):
        if len(list(barrier.glob("read-*"))) == 2 or any(r.poll() is not None for r in runs):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("neither run reached its bookmark")
    (barrier / "go").touch()
    outcomes = [await finish(first) for first in runs]
    ids = await lake.ids("comments")
    assert sorted(ids, key=int) == [str(i) for i in range(1, ROWS + 1)], outcomes
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 3], outcomes  # they overlapped: the second was refused, did nothing
    busy = next(err for code, err in outcomes if code == 3)
    assert "another curate run of comments" in busy
    code, err = await finish(lake.start("--dataset", "comments"))
    assert code == 0, err
    assert len(await lake.ids("comments")) == ROWS
    assert await lake.writer.keys("_staging/") == []
    assert await lake.claims.read("comments") is None


@pytest.mark.timeout(600)
async def test_a_live_claim_stops_a_run_at_once_the_other_datasets_still_run(lake: Lake) -> None:
    held = Claim("comments", "other-run", "elsewhere:1", datetime.now(UTC) + timedelta(hours=1))
    assert await lake.claims.create(held) is not None
    await land(lake.writer, "posts", HOUR, "p1", [envelope("posts", "1", _post(1))])
    before = await lake.writer.keys("")
    code, err = await finish(lake.start("--dataset", "comments", "--dataset", "posts"))
    assert code == 3, err
    assert "comments: skipped: another curate run of comments is in progress" in err
    assert "elsewhere:1" in err
    new = sorted(set(await lake.writer.keys("")) - set(before))
    assert new, "posts still ran"
    # posts' own files, and each snapshot table made from posts with its pointer: the left join
    # of posts to users is published before users has rows (user columns null); nothing of
    # comments'.
    from_posts = [
        t.name for t in DatasetRegistry.from_file(DATASETS_CONFIG).tables() if "posts" in t.inputs
    ]
    allowed = ("curated/", *(f"_state/curate/{t}/" for t in from_posts))
    assert all(k.startswith(allowed) for k in new), new
    tables = {k.split("/")[1] for k in new if k.startswith("curated/")}
    assert tables == {"posts", *from_posts}, new
    assert not any("comments" in k for k in new), new
    settings = CommonSettings.model_validate(
        {k: v for k, v in lake.env.items() if k.isupper() and not k.startswith("CURATE_")}
        | {"STREAM_NAME": lake.aws.stream_name, "LEASE_TABLE": lake.aws.lease_table}
        | {"STATE_TABLE": lake.aws.state_table}
    )
    shown = (await status(settings, [])).split("Curate runs in progress")[1]
    assert "other-run" in shown
    assert "elsewhere:1" in shown


@pytest.mark.timeout(600)
async def test_sigterm_releases_the_claim_sigkill_lets_it_expire(lake: Lake) -> None:
    stopped = lake.start("--dataset", "comments")
    await lake.wait_for_claim("comments", stopped)
    os.kill(stopped.pid, signal.SIGTERM)
    code, err = await finish(stopped)
    assert code == 1, err  # stopped: run again (the stack's loop exits 0)
    assert "curate: stopped" in err
    assert await lake.claims.read("comments") is None

    killed = lake.start("--dataset", "comments", CURATE_CLAIM_TTL_S="5")
    claim = await lake.wait_for_claim("comments", killed)
    os.killpg(killed.pid, signal.SIGKILL)
    await finish(killed)
    assert await lake.claims.read("comments") == claim  # left behind, expiring
    await asyncio.sleep(max(0.0, (claim.free_at - datetime.now(UTC)).total_seconds()))
    code, err = await finish(lake.start("--dataset", "comments"))
    assert code == 0, err
    assert sorted(await lake.ids("comments"), key=int) == [str(i) for i in range(1, ROWS + 1)]
    assert await lake.claims.read("comments") is None


@pytest.mark.timeout(300)
async def test_sigterm_stops_a_run_whose_spark_call_never_returns(
    lake: Lake, tmp_path: Path
) -> None:
    """A Spark call that cancelling its job does not end (parked in the JVM, by
    tests/curate/stuck.py) does not hold the process up: SIGTERM ends the run within seconds,
    saying so, its claim released, and its JVM exits with it."""
    marker = tmp_path / "jvm-pid"
    run = lake.start_hooked("stuck.py", str(marker), "run", "--dataset", "comments")
    for _ in range(2400):
        if marker.exists() and marker.read_text():
            break
        assert run.poll() is None, run.communicate()
        await asyncio.sleep(0.05)
    jvm = int(marker.read_text())
    os.kill(run.pid, signal.SIGTERM)
    code, err = await finish(run, within=30)
    assert code == 1, err
    assert "curate: stopped" in err
    assert "a Spark call did not end with its cancelled job" in err
    assert await lake.claims.read("comments") is None
    for _ in range(200):
        if not _alive(jvm):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the JVM outlived the curate process by 10 s")


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _post(i: int) -> dict[str, Any]:
    return {"userId": 1, "id": i, "title": f"t{i}", "body": f"b{i}"}
