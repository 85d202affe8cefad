"""A real curate process SIGKILLed mid-publish of a snapshot table (items_current), on moto
through a proxy that holds one request so the kill lands in a known step. Four curate runs of
one record each (each run is its own Spark, so the kills share one rerun):

- killed between the pointer write and Glue's UpdateTable: DuckDB (`query`) reads the new
  snapshot whole, Glue still names the old one and its files are all there;
- then, after a further version, killed between the snapshot upload and the pointer write: both
  readers keep what they named (the pointer S2, Glue S1), whole;
- the rerun publishes once, re-points Glue (from S1, two snapshots behind the pointer) and
  deletes only the folder nothing names (the killed run's).

With the default retention (1 h) no named folder is a candidate for expiry here: expiry while
Glue lags the pointer is not exercised by this test."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from tests.curate.lake import envelope, land
from tests.curate.test_tables import AT1, DAY1, Lake, lake
from tributary.version import canonical_instant, versioned_id
from tributary_stack.faultproxy import FaultProxy, RecordedCall

__all__ = ["lake"]  # the fixture, shared with test_tables
pytestmark = pytest.mark.timeout(1500)  # four CLI runs, each its own Spark
CLAIM_TTL_S = 20  # renewed every TTL/3: long enough for a loaded machine's Spark steps
POINTER = "/_state/curate/items_current/bookmark.json"


def item(n: int) -> bytes:
    version = f"2026-03-01T0{n}:00:00Z"
    data = {"id": 7, "name": f"v{n}", "price": 1.5, "updated_at": version}
    return envelope("items", versioned_id("7", canonical_instant(version)), data, AT1)


def update_table_of_items_current(call: RecordedCall) -> bool:
    table = call.body.get("TableInput", {}).get("Name")
    return call.operation == "UpdateTable" and table == "items_current"


def pointer_put(call: RecordedCall) -> bool:
    return call.service == "s3" and call.method == "PUT" and call.path.endswith(POINTER)


def killed_at(proxy: FaultProxy, env: dict[str, str], hold: object) -> None:
    """Run curate until the held request, SIGKILL its whole process group (Spark's JVM too)."""
    proxy.faults.held.clear()
    proxy.faults.hold = hold  # type: ignore[assignment]
    process = subprocess.Popen(
        [sys.executable, "-m", "tributary_curate", "run", "--dataset", "items"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proxy.faults.held.wait(timeout=400), "the run never reached the held request"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        proxy.faults.hold = None
    time.sleep(CLAIM_TTL_S + 1)  # the killed run's claim expires


async def glue_rows(lake: Lake) -> list[str]:
    """The rows at the folder Glue's items_current names, read back whole."""
    location = (await lake.table("items_current"))["StorageDescriptor"]["Location"]
    prefix = location.removeprefix(f"s3://{lake.bucket}/")
    keys = [k for k in await lake.s3.keys(prefix) if k.endswith(".parquet")]
    assert keys, f"Glue names {location}, which has no files"
    tables = [pq.read_table(io.BytesIO(await lake.s3.get(k))) for k in keys]
    return sorted(str(n) for t in tables for n in t.column("name").to_pylist())


async def folders(lake: Lake) -> set[str]:
    return {k.split("/")[2] for k in await lake.s3.keys("curated/items_current/")}


async def test_sigkill_mid_publish_then_rerun_converges(lake: Lake) -> None:
    with FaultProxy(lake.env["AWS_ENDPOINT_URL"]) as proxy:
        lake.env |= {"AWS_ENDPOINT_URL": proxy.endpoint, "CURATE_CLAIM_TTL_S": str(CLAIM_TTL_S)}
        await land(lake.s3, "items", DAY1, "i1", [item(1)])
        lake.run("items")
        s1 = (await lake.snapshot("items_current"))["id"]

        # 1. Killed after the pointer names S2, before Glue's UpdateTable.
        await land(lake.s3, "items", DAY1.replace(hour=11), "i2", [item(2)])
        killed_at(proxy, lake.env, update_table_of_items_current)
        s2 = (await lake.snapshot("items_current"))["id"]
        assert s2 != s1
        assert lake.query("items_current", "id", "name") == ["7|v2"]  # DuckDB: S2, whole
        assert await glue_rows(lake) == ["v1"]  # Glue: still S1, whole
        assert await folders(lake) == {s1, s2}

        # 2. A further version; killed after S3's files are uploaded, before the pointer names
        # them (the recompute comes before re-pointing Glue, so Glue still names S1).
        await land(lake.s3, "items", DAY1.replace(hour=12), "i3", [item(3)])
        killed_at(proxy, lake.env, pointer_put)
        assert (await lake.snapshot("items_current"))["id"] == s2
        orphans = await folders(lake) - {s1, s2}
        assert len(orphans) == 1, "the killed run uploaded its snapshot before the pointer"
        assert lake.query("items_current", "id", "name") == ["7|v2"]
        assert await glue_rows(lake) == ["v1"]

        # 3. The rerun: one new snapshot, Glue re-pointed to it, the orphan gone.
        lake.run("items")
        s3 = (await lake.snapshot("items_current"))["id"]
        assert s3 not in orphans
        assert lake.query("items_current", "id", "name") == ["7|v3"]
        table = await lake.table("items_current")
        assert table["StorageDescriptor"]["Location"].endswith(f"/{s3}/")
        assert await glue_rows(lake) == ["v3"]
        # The killed run's folder (named by nothing) is gone; S1 and S2 stay (retained 1 h).
        assert await folders(lake) == {s1, s2, s3}, "a folder a reader named was deleted"
        assert len(lake.query("items", "_id")) == 3  # each version curated once
