"""Snapshot tables under faults (memory lake, local Spark): Glue failing between the pointer
put and UpdateTable, once and twice, must never cost Athena the folder it reads; the failure
is in the pointer's `last_error`; a changed definition makes a snapshot stale."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from tests.curate.lake import envelope, land, post
from tests.curate.test_job import Harness, curated_rows, harness
from tributary.dataset import DatasetRegistry
from tributary.errors import TransientError
from tributary.testing import FakeClock
from tributary.version import canonical_instant, versioned_id
from tributary_curate.catalog import TableShape
from tributary_curate.snapshots import SnapshotJob, snapshot_of
from tributary_curate.staging import LocalStaging
from tributary_stack.status import curated_tables

__all__ = ["harness"]  # the fixture, shared with test_job
pytestmark = [
    pytest.mark.timeout(900),  # each test several Spark runs, on a loaded machine
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]
HOUR = datetime(2026, 3, 1, 12, tzinfo=UTC)
SHIPPED = Path(__file__).parents[2] / "config" / "datasets.yaml"


class FlakyCatalog:
    """The memory catalog, failing UpdateTable/CreateTable while `fail` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.fail = inner, False

    async def ensure_table(self, table: TableShape) -> None:
        if self.fail:
            raise TransientError("glue: UpdateTable throttled")
        await self.inner.ensure_table(table)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def item(i: int, version: str, name: str = "", at: str = "2026-03-01T12:00:00.000000Z") -> bytes:
    data = {"id": i, "name": name or version, "price": 1.5, "updated_at": version}
    return envelope("items", f"{i}@{version}", data, at)


class Snapshots:
    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.clock = FakeClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
        self.catalog = FlakyCatalog(harness.catalog)
        self.n = 0

    def job(self) -> SnapshotJob:
        h = self.harness
        return SnapshotJob(
            h.spark,
            h.lake,
            h.index,
            h.bookmarks,
            self.catalog,
            h.claims,
            lambda d, r: LocalStaging(h.tmp / "snap" / d / r, h.lake),
            self.clock,
            "s3://lake",
            retain_s=3600,
        )

    async def curate(self) -> None:
        self.n += 1
        version = f"2026-03-01T0{self.n}:00:00Z"
        h = self.harness
        await land(h.lake, "items", HOUR.replace(hour=self.n), f"i{self.n}", [item(7, version)])
        await h.job(clock=self.clock).run(h.registry["items"])

    async def publish(self, registry: DatasetRegistry | None = None) -> Any:
        registry = registry or self.harness.registry
        table = next(t for t in registry.tables() if t.name == "items_current")
        return await self.job().run(registry, table)

    def glue_location(self) -> str:
        return str(self.harness.catalog.tables["items_current"].location)

    def files_at(self, location: str) -> list[str]:
        folder = location.split("s3://lake/")[1]
        return [k for k in self.harness.lake.objects if k.startswith(folder)]


async def test_glue_failing_once_then_expiry_keeps_what_athena_read(harness: Harness) -> None:
    snaps = Snapshots(harness)
    await snaps.curate()
    await snaps.publish()
    s1 = snaps.glue_location()
    snaps.clock.advance(600)
    await snaps.curate()
    snaps.catalog.fail = True  # the pointer moves to S2, Glue stays at S1
    with pytest.raises(TransientError):
        await snaps.publish()
    snaps.catalog.fail = False
    assert snaps.glue_location() == s1
    error = (await harness.bookmarks.get("items_current")).last_error
    assert "UpdateTable throttled" in error["error"]
    snaps.clock.advance(3 * 3600)
    await snaps.curate()
    await snaps.publish()  # Glue S1 → S3 in this run: S1 is what Athena read a moment ago
    assert snaps.files_at(s1), "the folder Glue named until this run was deleted"
    pointer = await harness.bookmarks.get("items_current")
    assert pointer.last_error == {}
    assert pointer.last_run["catalog"]["previous"] in s1


async def test_glue_failing_twice_never_loses_the_folder_glue_names(harness: Harness) -> None:
    snaps = Snapshots(harness)
    await snaps.curate()
    await snaps.publish()
    s1 = snaps.glue_location()
    snaps.catalog.fail = True
    for _ in range(2):  # the pointer moves on twice; Glue still names S1
        snaps.clock.advance(3 * 3600)
        await snaps.curate()
        with pytest.raises(TransientError):
            await snaps.publish()
    assert snaps.glue_location() == s1
    assert snaps.files_at(s1), "the folder Glue names now was deleted"
    snaps.catalog.fail = False
    snaps.clock.advance(3 * 3600)
    await snaps.publish()  # catches up: Glue at the pointer's snapshot
    pointer = await harness.bookmarks.get("items_current")
    snapshot = snapshot_of(pointer)
    assert snapshot is not None
    assert snaps.glue_location().endswith(snapshot["location"])
    assert snaps.files_at(s1), "the folder Glue named before its switch was deleted"


async def test_a_rerun_after_glue_failed_re_points_it_without_recomputing(
    harness: Harness,
) -> None:
    """Glue fails after the pointer names the new snapshot (as a run killed there leaves it);
    the rerun, with no input changed, finds the snapshot up to date: it writes no new one and
    only points Glue at the one the pointer names."""
    snaps = Snapshots(harness)
    await snaps.curate()
    await snaps.publish()
    snaps.clock.advance(600)
    await snaps.curate()
    snaps.catalog.fail = True
    with pytest.raises(TransientError):
        await snaps.publish()
    snaps.catalog.fail = False
    named = snapshot_of(await harness.bookmarks.get("items_current"))
    assert named is not None
    assert not snaps.glue_location().endswith(named["location"])  # Glue lags the pointer
    objects = dict(harness.lake.objects)
    await snaps.publish()
    pointer = await harness.bookmarks.get("items_current")
    assert snapshot_of(pointer) == named  # no recompute: the same snapshot
    assert snaps.glue_location().endswith(named["location"])
    assert pointer.last_error == {}
    written = {k for k in harness.lake.objects if objects.get(k) != harness.lake.objects[k]}
    assert all(k.startswith("_state/") for k in written), sorted(written)  # no new files


async def test_a_changed_definition_publishes_a_new_snapshot(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Same inputs, `current.order_by` changed in the registry: the next run recomputes (the
    later arrival, an older version, now wins) instead of saying "up to date"."""
    harness = Harness(spark, tmp_path, DatasetRegistry.from_file(SHIPPED))
    snaps = Snapshots(harness)
    new, old = "2026-03-01T05:00:00Z", "2026-03-01T01:00:00Z"
    await land(harness.lake, "items", HOUR, "a", [item(7, new, "new")])
    late = "2026-03-01T13:00:00.000000Z"
    await land(harness.lake, "items", HOUR.replace(hour=13), "b", [item(7, old, "old", late)])
    await harness.job(clock=snaps.clock).run(harness.registry["items"])
    await snaps.publish()
    first = snapshot_of(await harness.bookmarks.get("items_current"))
    assert first is not None
    text = SHIPPED.read_text().replace(
        "current: {key: id, order_by: updated_at}", "current: {key: id, order_by: _received_at}"
    )
    changed = tmp_path / "datasets.yaml"
    changed.write_text(text)
    await snaps.publish(DatasetRegistry.from_file(changed))
    second = snapshot_of(await harness.bookmarks.get("items_current"))
    assert second is not None
    assert second["id"] != first["id"]
    rows = curated_rows(harness.lake, second["location"].removeprefix("curated/").rstrip("/"))
    assert [r["name"] for r in rows] == ["old"]


def joined(harness: Harness, pointer: Any) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """The rows of the snapshot `pointer` names, and the columns it records."""
    snapshot = snapshot_of(pointer)
    assert snapshot is not None
    folder = snapshot["location"].removeprefix("curated/").rstrip("/")
    return curated_rows(harness.lake, folder), snapshot["columns"]


async def test_a_left_join_publishes_before_its_right_side_has_rows(
    spark: SparkSession, tmp_path: Path
) -> None:
    """posts curated, users not yet: posts_with_users (posts left-joined to users) holds every
    post, its user columns null but typed as they will be; users' first rows recompute it with
    the same columns (its Glue table too), and no post is lost or doubled."""
    harness = Harness(spark, tmp_path, DatasetRegistry.from_file(SHIPPED))
    snaps = Snapshots(harness)
    table = next(t for t in harness.registry.tables() if t.name == "posts_with_users")
    posts = [envelope("posts", str(i), post(i), "2026-03-01T12:00:00Z") for i in (1, 2, 3)]
    await land(harness.lake, "posts", HOUR, "p", posts)
    await harness.job(clock=snaps.clock).run(harness.registry["posts"])
    result = await snaps.job().run(harness.registry, table)
    assert result.curated == 3
    pointer = await harness.bookmarks.get("posts_with_users")
    assert "waiting" not in pointer.last_run
    assert (snapshot_of(pointer) or {}).get("empty_inputs") == ["users"]
    shown = await curated_tables(harness.registry, harness.bookmarks)
    assert "users: no rows yet (columns null)" in shown
    rows, before = joined(harness, pointer)
    assert sorted(r["id"] for r in rows) == [1, 2, 3]
    assert all(r["user_name"] is None and r["user_address_city"] is None for r in rows)
    assert ["user_name", "string"] in before
    glue_before = harness.catalog.tables["posts_with_users"].columns

    user = {
        "id": 2, "name": "Ann", "username": "ann", "email": "a@example.test",
        "address": {"city": "Oslo"}, "updated_at": "2026-03-01T12:00:00Z",
    }  # fmt: skip
    await land(
        harness.lake,
        "users",
        HOUR,
        "u",
        [envelope("users", versioned_id("2", canonical_instant("2026-03-01T12:00:00Z")), user)],
    )
    await harness.job(clock=snaps.clock).run(harness.registry["users"])
    published = await snaps.job().run(harness.registry, table)
    assert published.curated == 3
    pointer = await harness.bookmarks.get("posts_with_users")
    assert "empty_inputs" not in (snapshot_of(pointer) or {})
    assert "users: no rows yet" not in await curated_tables(harness.registry, harness.bookmarks)
    rows, after = joined(harness, pointer)
    assert sorted((r["id"], r["user_name"], r["user_address_city"]) for r in rows) == [
        (1, "Ann", "Oslo"),  # userId 2
        (2, None, None),  # userId 3: no such user
        (3, None, None),
    ]
    assert after == before
    assert harness.catalog.tables["posts_with_users"].columns == glue_before


async def test_an_inner_join_or_a_current_table_waits_and_says_so(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """posts curated, users not yet: posts_with_users as an inner join, and users_current, publish
    nothing and say why (a warning, `last_run.waiting` in the pointer, `make status`'s row)."""
    inner = tmp_path / "datasets.yaml"
    inner.write_text(SHIPPED.read_text().replace("how: left", "how: inner"))
    harness = Harness(spark, tmp_path, DatasetRegistry.from_file(inner))
    snaps = Snapshots(harness)
    tables = {t.name: t for t in harness.registry.tables()}
    await land(
        harness.lake, "posts", HOUR, "p", [envelope("posts", "1", post(1), "2026-03-01T12:00:00Z")]
    )
    await harness.job(clock=snaps.clock).run(harness.registry["posts"])
    with caplog.at_level(logging.WARNING, logger="tributary_curate.snapshots"):
        for name in ("posts_with_users", "users_current"):
            result = await snaps.job().run(harness.registry, tables[name])
            assert result.curated == 0
    assert len([r for r in caplog.records if r.getMessage() == "snapshot table waiting"]) == 2
    shown = await curated_tables(harness.registry, harness.bookmarks)  # type: ignore[arg-type]
    for name in ("posts_with_users", "users_current"):
        pointer = await harness.bookmarks.get(name)
        assert snapshot_of(pointer) is None
        assert pointer.last_run["waiting"]["inputs"] == ["users"]
        row = next(line for line in shown.splitlines() if line.startswith(name))
        assert "waiting since 2026-03-02T09:00:00.000Z" in row
        assert "first curated rows of users" in row
    waiting = (await harness.bookmarks.get("posts_with_users")).last_run["waiting"]
    assert "inner join of users" in waiting["reason"]
    assert "posts_with_users" not in harness.catalog.tables
