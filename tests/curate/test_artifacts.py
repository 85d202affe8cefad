"""The curate job's deploy artifacts against Glue 5.0's own modules.

- The wheels resolved as pip on Glue would (`pip install --dry-run --report` into a venv pinned
  to boto3/botocore 1.34.131, aiobotocore 2.13.1, s3fs 2024.6.1, pandas 2.2.2, pyarrow 17.0.0):
  nothing of those changes, no pyspark, no duckdb.
- Installed for real next to those modules, the job's S3 stores make their conditional writes
  (Glue's botocore has no IfNoneMatch/IfMatch parameters) against moto.
- `make glue-artifacts`' script uploads the script, the zip of wheels and the registry, then
  starts the trigger.
These need PyPI (pip through the proxy here); the Glue-pinned venv is made once under .local/.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, lake_settings
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary_stack.moto import MotoServer

SCRIPT = REPO / "glue" / "scripts" / "glue_artifacts.py"
GLUE = {
    "boto3": "1.34.131",
    "botocore": "1.34.131",
    "aiobotocore": "2.13.1",
    "s3fs": "2024.6.1",
    "pandas": "2.2.2",
    "pyarrow": "17.0.0",
}
pytestmark = pytest.mark.timeout(900)


def artifacts(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
        cwd=REPO,
    )


def test_the_wheels_change_nothing_glue_provides() -> None:
    done = artifacts("resolve")
    assert done.returncode == 0, done.stderr
    resolution = json.loads(done.stdout)
    installs = {i["name"]: i["version"] for i in resolution["install"]}
    assert {"tributary", "tributary-curate"} <= set(installs)
    assert not set(installs) & set(GLUE), {n: installs[n] for n in set(installs) & set(GLUE)}
    assert "pyspark" not in installs
    assert "duckdb" not in installs
    # The venv still holds exactly Glue's versions (the resolution ran against them).
    venv = REPO / ".local" / "glue5-venv" / "bin" / "python"
    listed = subprocess.run(
        [str(venv), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    have = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    assert {n: have.get(n) for n in GLUE} == GLUE


CONDITIONAL_WRITES = """
import asyncio, sys
from dataclasses import replace
from tributary.aws import AwsClients
from tributary.raw_writer import RawObject, WriteOutcome
from tributary.s3_writer import S3RawWriter
from tributary.settings import AwsSettings
from tributary_curate.bookmark import BookmarkConflictError, S3BookmarkStore
from tributary_curate.claim import S3ClaimStore, acquire, DatasetBusyError
from tributary.clock import SystemClock
from tributary_curate.compat import conditional_writes

async def main():
    async with AwsClients(AwsSettings()) as clients:
        s3 = await clients.s3()
        print("shimmed", conditional_writes(s3))
        writer = S3RawWriter(s3, sys.argv[1])
        obj = RawObject("raw/x/a.ndjson.gz", b"x", 1, "a", "a")
        assert await writer.put(obj) is WriteOutcome.WRITTEN
        assert await writer.put(obj) is WriteOutcome.ALREADY_EXISTS
        marks = S3BookmarkStore(s3, sys.argv[1])
        first = await marks.put(await marks.get("x"))
        await marks.put(replace(first, runs=5))
        try:
            await marks.put(replace(first, runs=6))
        except BookmarkConflictError:
            print("bookmark conflict refused")
        claims = S3ClaimStore(s3, sys.argv[1])
        held = await acquire(claims, "x", "r1", SystemClock(), 60)
        try:
            await acquire(claims, "x", "r2", SystemClock(), 60)
        except DatasetBusyError:
            print("second claim refused")
        await claims.delete(replace(held.claim, etag='"stale"'))  # DeleteObject If-Match
        if await claims.read("x") is not None:
            print("stale release refused")
        await claims.delete(held.claim)
        assert await claims.read("x") is None

asyncio.run(main())
"""


async def test_conditional_writes_work_on_glues_botocore(moto: MotoServer, tmp_path: Path) -> None:
    venv = tmp_path / "glue-run"
    await asyncio.to_thread(
        subprocess.run,
        [str(REPO / ".local" / "glue5-venv" / "bin" / "python"), "-m", "venv", str(venv)],
        check=True,
    )
    python = venv / "bin" / "python"
    dist = sorted((REPO / ".local" / "glue-artifacts" / "dist").glob("*.whl"))
    if len(dist) != 2:
        assert (await asyncio.to_thread(artifacts, "resolve")).returncode == 0
        dist = sorted((REPO / ".local" / "glue-artifacts" / "dist").glob("*.whl"))
    pins = [f"{n}=={v}" for n, v in GLUE.items() if n in ("boto3", "botocore", "aiobotocore")]
    await asyncio.to_thread(
        subprocess.run,
        [str(python), "-m", "pip", "install", "-q", "--only-binary=:all:", *pins, *map(str, dist)],
        check=True,
        timeout=600,
    )
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    env = {**os.environ, "AWS_ENDPOINT_URL": moto.endpoint}
    run = await asyncio.to_thread(
        subprocess.run,
        [str(python), "-c", CONDITIONAL_WRITES, lake.lake_bucket],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:4] == [
        "shimmed True",
        "bookmark conflict refused",
        "second claim refused",
        "stale release refused",
    ]


async def test_make_glue_artifacts_uploads_then_starts_the_trigger(moto: MotoServer) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    async with AwsClients(lake) as clients:
        glue = await clients.glue()
        await glue.create_job(
            Name="curate", Role="r", Command={"Name": "glueetl", "ScriptLocation": "s3://x/y"}
        )
        await glue.create_trigger(
            Name="curate-schedule",
            Type="SCHEDULED",
            Schedule="cron(15 * * * ? *)",
            Actions=[{"JobName": "curate"}],
            StartOnCreation=False,
        )
        env = {"AWS_ENDPOINT_URL": moto.endpoint, "LAKE_BUCKET": lake.lake_bucket}
        done = await asyncio.to_thread(artifacts, "--start-trigger", "curate-schedule", env=env)
        assert done.returncode == 0, done.stderr
        s3 = await clients.s3()
        listed = await s3.list_objects_v2(Bucket=lake.lake_bucket, Prefix="_deploy/")
        assert sorted(o["Key"] for o in listed["Contents"]) == [
            "_deploy/config/datasets.yaml",
            "_deploy/glue/curate_job.py",
            "_deploy/glue/tributary-curate-modules.zip",
        ]
        trigger = (await glue.get_trigger(Name="curate-schedule"))["Trigger"]
        assert trigger["State"] == "ACTIVATED"
    with zipfile.ZipFile(REPO / ".local" / "glue-artifacts" / "tributary-curate-modules.zip") as z:
        names = z.namelist()
        requirements = z.read("requirements.txt").decode().split()
    assert sorted(requirements) == sorted(n for n in names if n.endswith(".whl"))
    assert any(n.startswith("tributary_curate-") for n in names)
    assert not [n for n in names if n.split("-")[0].lower() in (*GLUE, "pyspark", "duckdb")]
    assert all("manylinux" in n or "none-any" in n for n in names if n.endswith(".whl"))
