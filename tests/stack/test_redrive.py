"""`python -m tributary_stack redrive` as a process on moto: a registry fix makes 3 of 5
quarantine reasons valid; records quarantined by the API (a real API process) and by curate (a
real curate run) are redriven once killed half way, then to the end, then again; after a
curate run each recovered record is in curated once, the other two reasons stay, and no
quarantine object was changed or deleted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_wire import StartApi, start_api  # noqa: F401 - the fixture
from tests.conftest import REPO
from tests.curate.lake import envelope, land
from tests.stack.test_rewind import cli_env, stack_cli
from tributary.aws import AwsClients
from tributary.s3_writer import S3RawWriter
from tributary.settings import AwsSettings
from tributary_stack.faultproxy import FaultProxy
from tributary_stack.inspect import read_objects, read_parquet
from tributary_stack.moto import MotoServer
from tributary_stack.process import ManagedProcess

STRICT = """
datasets:
  posts:
    id_field: id
    partition_key: userId
    schema:
      fields:
        userId: {type: integer, required: true, minimum: 1, maximum: %d}
        id: {type: integer, required: true, minimum: 1}
        title: {type: string, required: true, max_length: %d}
        body: {type: string, required: true, min_length: %d}
"""
V1 = STRICT % (10, 20, 3)
V2 = STRICT % (1000, 100, 1)  # the fix: three of the five reasons below become valid

FIXED = ("long title", "short body", "big user")
STAYS = ("user not a number", "no body")


def post(i: int, kind: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"userId": 1 + i % 5, "id": i, "title": f"t{i}", "body": f"b{i}xx"}
    if kind == "long title":
        record["title"] = "x" * 30
    elif kind == "short body":
        record["body"] = "ab"
    elif kind == "big user":
        record["userId"] = 50
    elif kind == "user not a number":
        record["userId"] = "abc"
    elif kind == "no body":
        del record["body"]
    return record


KINDS = (*FIXED, *STAYS)


def batch(start: int) -> list[dict[str, Any]]:
    """Five valid records, then one of each reason."""
    return [post(start + i, None) for i in range(5)] + [
        post(start + 5 + n, kind) for n, kind in enumerate(KINDS)
    ]


def curate(lake: AwsSettings, config: Path, work: Path, out: Path) -> None:
    env = {
        **cli_env(lake),
        "DATASETS_CONFIG": str(config),
        "CURATE_WORK_DIR": str(work),
        "GLUE_DATABASE": lake.glue_database,
    }
    with out.open("a") as log:
        done = subprocess.run(
            [sys.executable, "-m", "tributary_curate", "run", "--dataset", "posts"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=log,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, out.read_text()


async def keys(lake: AwsSettings, prefix: str) -> list[str]:
    async with AwsClients(lake) as clients:
        return await S3RawWriter(await clients.s3(), lake.lake_bucket).keys(prefix)


def curated_ids(lake: AwsSettings) -> Counter[int]:
    tables = asyncio.run(read_parquet(lake, "curated/posts/"))
    return Counter(int(i) for t in tables.values() for i in t.column("id").to_pylist())


@pytest.mark.timeout(600)
def test_registry_fix_redriven_killed_twice_each_record_once_in_curated(
    lake: AwsSettings,
    moto: MotoServer,
    start_api: StartApi,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    v1, v2 = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    v1.write_text(V1)
    v2.write_text(V2)
    api = start_api(lake, moto.endpoint, API_SINK="s3", DATASETS_CONFIG=str(v1))
    for n in range(8):  # the API quarantines 5 of each 10: one quarantine object per request
        answer = api.post("posts", batch(100 * n + 1), **{"Idempotency-Key": f"req-{n}"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["rejected"] == 5
    # Records only curate rejects (landed in raw as a stream consumer lands bare records).
    now = datetime.now(UTC)

    async def land_raw() -> None:
        async with AwsClients(lake) as clients:
            writer = S3RawWriter(await clients.s3(), lake.lake_bucket)
            for n in range(4):
                lines = [envelope("posts", str(r["id"]), r) for r in batch(10_000 + 100 * n)]
                await land(writer, "posts", now, f"stream{n}", lines)

    asyncio.run(land_raw())
    logs = tmp_path / "curate.log"
    curate(lake, v1, tmp_path / "work", logs)
    quarantine = asyncio.run(read_objects(lake, "quarantine/posts/"))
    assert sum(k.rsplit("/", 1)[1].startswith("curate-") for k in quarantine) == 4
    assert sum(k.rsplit("/", 1)[1].startswith("api-") for k in quarantine) == 8
    before = curated_ids(lake)
    assert len(before) == 60  # 12 batches × 5 valid records

    v2_lake = {**cli_env(lake), "DATASETS_CONFIG": str(v2)}
    dry = _run(v2_lake, "redrive", "--dataset", "posts", "--dry-run")
    dry_total = next(line for line in dry.splitlines() if line.startswith("(total)")).split()
    assert dry_total[1:4] == ["36", "24", "0"], dry  # 3 × 12 would recover, 2 × 12 stay
    assert not asyncio.run(keys(lake, "_state/redrive/"))  # a dry run writes nothing
    assert not [k for k in asyncio.run(keys(lake, "raw/posts/")) if "/redrive-" in k]
    env = {**os.environ, **cli_env(lake), "DATASETS_CONFIG": str(v2)}
    # Killed half way: every request is slowed, the process is SIGKILLed after its first
    # manifest, well before the twelfth.
    with FaultProxy(moto.endpoint) as proxy, (tmp_path / "redrive.log").open("w") as out:
        proxy.faults.latency_s = 0.15
        killed = ManagedProcess.python_module(
            "redrive",
            "tributary_stack",
            ["redrive", "--dataset", "posts"],
            {**env, "AWS_ENDPOINT_URL": proxy.endpoint},
            out,
        ).start()
        deadline = time.monotonic() + 120
        while not asyncio.run(keys(lake, "_state/redrive/")):
            assert killed.poll() is None, (tmp_path / "redrive.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        killed.signal(signal.SIGKILL)
        killed.stop(timeout=5)
    manifests = [k for k in asyncio.run(keys(lake, "_state/redrive/")) if ".target-" not in k]
    assert 0 < len(manifests) < 12, manifests
    cut = [k for k in asyncio.run(keys(lake, "raw/posts/")) if "/redrive-" in k]
    assert len(cut) < len(manifests), (cut, manifests)  # killed between a manifest and its raw
    first = _run(v2_lake, "redrive", "--dataset", "posts")
    again = _run(v2_lake, "redrive", "--dataset", "posts")
    assert "(total)" in first
    total = next(line for line in again.splitlines() if line.startswith("(total)")).split()
    assert total[1:4] == ["0", "24", "36"], again  # nothing new; 2 × 12 stay; 36 earlier
    for reason in ("title: length must be <= 20", "body: length must be >= 3", "must be <= 10"):
        assert any(reason in line for line in first.splitlines()), first

    curate(lake, v2, tmp_path / "work", logs)
    after = curated_ids(lake)
    recovered = {int(r["id"]) for s in [*range(8)] for r in batch(100 * s + 1)[5:8]} | {
        int(r["id"]) for s in range(4) for r in batch(10_000 + 100 * s)[5:8]
    }
    assert after == before + Counter(recovered)  # each recovered record once, nothing else
    assert max(after.values()) == 1
    assert asyncio.run(read_objects(lake, "quarantine/posts/")) == quarantine  # untouched
    raw_redriven = [k for k in asyncio.run(keys(lake, "raw/posts/")) if "/redrive-" in k]
    assert len(raw_redriven) == 12  # one per quarantine object, whatever the kill left
    status = stack_cli(lake, "status")
    assert "redrive" in status


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tributary_stack", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout
