"""How `reprocess` has curate run again: on AWS it starts the deployed Glue job (StartJobRun on
moto, as a process with the CLI's environment), and its claim check reads the injected clock."""

from __future__ import annotations

import asyncio
import io
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.curate.lake import envelope, land, post
from tests.stack.test_rewind import stack_cli
from tributary.aws import AwsClients
from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError
from tributary.memory_writer import MemoryRawWriter
from tributary.raw_writer import RawObject
from tributary.s3_writer import S3RawWriter
from tributary.settings import AwsSettings
from tributary_curate.bookmark import MemoryBookmarkStore
from tributary_curate.claim import Claim, MemoryClaimStore
from tributary_stack.replay.reprocess import PartitionCount, Reprocessor

HOUR = datetime(2026, 11, 30, 10, tzinfo=UTC)


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


async def test_the_claim_check_reads_the_injected_clock() -> None:
    """A claim free at 2026-11-30 11:00 is live at 10:00 on the command's clock, whatever the
    machine's wall clock says (it said "free" with datetime.now, long after 11:00)."""
    claims = MemoryClaimStore()
    await claims.create(Claim("posts", "run-1", "curate@host", HOUR + timedelta(hours=1)))
    reprocessor = Reprocessor(MemoryRawWriter(), MemoryBookmarkStore(), claims, FixedClock(HOUR))
    with pytest.raises(PermanentError, match="in progress"):
        await reprocessor.forget("posts", "year=2026/month=11/day=30/hour=09", HOUR_FOLDER)
    later = Reprocessor(
        MemoryRawWriter(), MemoryBookmarkStore(), claims, FixedClock(HOUR + timedelta(hours=2))
    )
    assert await later.forget("posts", "year=2026/month=11/day=30/hour=09", HOUR_FOLDER) == 0


HOUR_FOLDER = "year=2026/month=11/day=30/hour=10"


@pytest.mark.timeout(300)
def test_reprocess_on_aws_starts_the_glue_curate_job_and_prints_its_run_id(
    lake: AwsSettings,
) -> None:
    async def setup() -> None:
        async with AwsClients(lake) as clients:
            await (await clients.glue()).create_job(
                Name="app-env-curate",
                Role="arn:aws:iam::123456789012:role/curate",
                Command={"Name": "glueetl", "ScriptLocation": "s3://x/curate_job.py"},
            )
            writer = S3RawWriter(await clients.s3(), lake.lake_bucket)
            lines = [
                envelope("posts", str(i), post(i), "2026-11-30T10:00:00.000000Z") for i in (1, 2)
            ]
            await land(writer, "posts", HOUR, "b1", lines)

    asyncio.run(setup())
    out = stack_cli(
        lake, "reprocess", "--dataset", "posts", "--from", "2026-11-30T10", "--to",
        "2026-11-30T10", "--run", "glue", "--job", "app-env-curate", "--by", "ann@host",
    )  # fmt: skip
    assert "forgotten by curate" in out
    printed = out.split(": run ")[1].split()[0]
    assert f"--run-id {printed}" in out  # how to watch it: the command does not wait

    async def runs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with AwsClients(lake) as clients:
            listed = await (await clients.glue()).get_job_runs(JobName="app-env-curate")
            s3 = await clients.s3()
            history = [
                orjson.loads(await (await s3.get_object(Bucket=lake.lake_bucket, Key=k))["Body"]
                             .read())
                for k in await S3RawWriter(s3, lake.lake_bucket).keys("_state/replay/")
            ]  # fmt: skip
            return [dict(r) for r in listed["JobRuns"]], history

    job_runs, history = asyncio.run(runs())
    assert [r["Id"] for r in job_runs] == [printed]
    assert job_runs[0]["Arguments"] == {"--DATASETS": "posts"}
    assert any(doc.get("counts", {}).get("curate") == printed for doc in history), history
    # Without a job name, --run glue is refused before anything is forgotten.
    refused = stack_cli(
        lake, "reprocess", "--dataset", "posts", "--from", "2026-11-30T10", "--to",
        "2026-11-30T10", "--run", "glue", code=2,
    )  # fmt: skip
    assert "CURATE_JOB_NAME" in refused


def moto_transition(lake: AwsSettings, body: dict[str, Any], what: str = "set-transition") -> None:
    """moto's state manager (how fast its job runs move from RUNNING on)."""
    request = urllib.request.Request(
        f"{lake.aws_endpoint_url}/moto-api/state-manager/{what}",
        data=orjson.dumps(body),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201, answer.read()


def test_reprocess_while_a_curate_run_is_in_progress_says_so_and_records_not_started(
    lake: AwsSettings,
) -> None:
    job = "app-env-curate-busy"
    # moto moves a job run on to SUCCEEDED as it is read; keep runs RUNNING for this test.
    moto_transition(
        lake,
        {"model_name": "glue::job_run", "transition": {"progression": "manual", "times": 1000}},
    )

    async def setup() -> None:
        async with AwsClients(lake) as clients:
            glue = await clients.glue()
            await glue.create_job(
                Name=job,
                Role="arn:aws:iam::123456789012:role/curate",
                Command={"Name": "glueetl", "ScriptLocation": "s3://x/curate_job.py"},
                ExecutionProperty={"MaxConcurrentRuns": 1},  # as lake.yml deploys it
            )
            await glue.start_job_run(JobName=job, Arguments={"--DATASETS": "events"})
            writer = S3RawWriter(await clients.s3(), lake.lake_bucket)
            lines = [
                envelope("posts", str(i), post(i), "2026-11-30T10:00:00.000000Z") for i in (1, 2)
            ]
            await land(writer, "posts", HOUR, "b1", lines)

    try:
        asyncio.run(setup())
        out = stack_cli(
            lake, "reprocess", "--dataset", "posts", "--from", "2026-11-30T10", "--to",
            "2026-11-30T10", "--run", "glue", "--job", job, "--by", "ann@host", code=1,
        )  # fmt: skip
    finally:
        moto_transition(lake, {"model_name": "glue::job_run"}, "unset-transition")
    assert "forgotten by curate" in out
    assert "already running" in out, out
    assert "the next scheduled run curates it" in out, out
    command = f'aws glue start-job-run --job-name {job} --arguments \'{{"--DATASETS":"posts"}}\''
    assert command in out, out
    assert "check --job" not in out, out  # not blamed on the job name or IAM

    async def history() -> list[dict[str, Any]]:
        async with AwsClients(lake) as clients:
            s3 = await clients.s3()
            return [
                orjson.loads(await (await s3.get_object(Bucket=lake.lake_bucket, Key=k))["Body"]
                             .read())
                for k in await S3RawWriter(s3, lake.lake_bucket).keys("_state/replay/")
            ]  # fmt: skip

    docs = asyncio.run(history())
    done = [d for d in docs if d["phase"] == "finished"]
    assert done, docs
    assert done[-1]["counts"]["curate"].startswith("not started (a curate run was in progress)")
    assert command in done[-1]["counts"]["curate"]
    assert not any(d.get("error") for d in docs), docs  # not recorded as failed


def parquet_of(ids: list[str]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"_id": ids}), out)
    return out.getvalue()


async def test_the_dry_run_counts_per_curated_partition_distinct_ids_as_curate_would(
    registry: DatasetRegistry,
) -> None:
    """Two raw hours of 2026-11-30 and one of 12-01 arriving at midnight: id 3 in two objects
    (one row: its first arrival, on the 30th), id 7's second copy arrives on 12-01 but its
    first on the 30th; id 1 curated on the 30th, id 2 on the 29th (the dedupe look-back)."""
    lake = MemoryRawWriter()
    at = "2026-11-30T{h}:05:00.000000Z"
    await land(
        lake, "posts", HOUR, "a",
        [envelope("posts", str(i), post(i), at.format(h="10")) for i in (1, 2, 3, 7)]
        + [envelope("posts", "bad", {"id": "not a number"}, at.format(h="10"))],
    )  # fmt: skip
    await land(
        lake, "posts", HOUR + timedelta(hours=1), "b",
        [envelope("posts", str(i), post(i), at.format(h="11")) for i in (3, 4)],
    )  # fmt: skip
    next_day = datetime(2026, 12, 1, 0, tzinfo=UTC)
    await land(
        lake, "posts", next_day, "c",
        [envelope("posts", str(i), post(i), "2026-12-01T00:01:00.000000Z") for i in (7, 8)],
    )  # fmt: skip
    for day, ids in (("day=30", ["1"]), ("day=29", ["2"])):
        key = f"curated/posts/year=2026/month=11/{day}/part-0.parquet"
        await lake.put(RawObject(key, parquet_of(ids), len(ids), "b", "b"))
    reprocessor = Reprocessor(lake, MemoryBookmarkStore(), MemoryClaimStore(), FixedClock(HOUR))
    counts = await reprocessor.count(
        registry["posts"], "year=2026/month=11/day=30/hour=10", "year=2026/month=12/day=01/hour=00"
    )
    assert (counts.objects, counts.records, counts.invalid, counts.unplaced) == (3, 9, 1, 0)
    assert counts.partitions == (
        # lines 6 (1, 2, 3, 7, 3, 4) → ids 1, 2, 3, 4, 7: 1 and 2 curated, 3, 4, 7 to add
        PartitionCount("year=2026/month=11/day=30", 6, 5, 2, 3),
        # lines 7 and 8: 7's first arrival was on the 30th, so only 8 lands here
        PartitionCount("year=2026/month=12/day=01", 2, 1, 0, 1),
    )


async def test_the_dry_run_finds_ids_curated_in_any_partition_the_range_touches(
    registry: DatasetRegistry,
) -> None:
    """Curate anti-joins against the union of the touched partitions and their look-back
    days: id 7, curated on 12-01 (a later day the range also places rows in), is present for
    its row on 11-30 too (curate would add nothing for it)."""
    lake = MemoryRawWriter()
    await land(
        lake, "posts", HOUR, "a",
        [envelope("posts", str(i), post(i), "2026-11-30T10:05:00.000000Z") for i in (3, 7)],
    )  # fmt: skip
    next_day = datetime(2026, 12, 1, 0, tzinfo=UTC)
    await land(
        lake, "posts", next_day, "c",
        [envelope("posts", "8", post(8), "2026-12-01T00:01:00.000000Z")],
    )  # fmt: skip
    key = "curated/posts/year=2026/month=12/day=01/part-0.parquet"
    await lake.put(RawObject(key, parquet_of(["7"]), 1, "b", "b"))
    reprocessor = Reprocessor(lake, MemoryBookmarkStore(), MemoryClaimStore(), FixedClock(HOUR))
    counts = await reprocessor.count(
        registry["posts"], "year=2026/month=11/day=30/hour=10", "year=2026/month=12/day=01/hour=00"
    )
    assert counts.partitions == (
        PartitionCount("year=2026/month=11/day=30", 2, 2, 1, 1),  # 7 present, 3 to add
        PartitionCount("year=2026/month=12/day=01", 1, 1, 0, 1),
    )
