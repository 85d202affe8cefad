"""The replay commands' parts on in-memory collaborators: the bookmark forgetting a range, the
consumer's quarantine lines re-routed, a redrive cut between its manifest and its raw object,
and rewind never moving a checkpoint forward."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tributary.batch import decode_ndjson_gz, encode_ndjson_gz
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError, TransientError
from tributary.layout import Zone, object_key
from tributary.memory_writer import MemoryRawWriter
from tributary.raw_writer import RawObject, WriteOutcome
from tributary_curate.bookmark import Bookmark, forget_hours
from tributary_stack.replay.history import Command, HistoryLog, history_table
from tributary_stack.replay.recheck import Origin, Rechecker
from tributary_stack.replay.redrive import MANIFEST_PREFIX, Redriver, RedriveRequest
from tributary_stack.replay.rewind import (
    Action,
    Rewinder,
    RewindPoint,
    RewindRequest,
    first_at,
    nothing_new,
    plan_shard,
    rewind_id,
)
from tributary_stream.lease import Lease, RewindTo, Rewound
from tributary_stream.route import Router
from tributary_stream.stream import Page, Record
from tributary_stream.testing import MemoryLeaseStore, MemoryStream

H = "raw/posts/year=2026/month=11/day={d}/hour={h}/x-{n}.ndjson.gz"


def test_forget_hours_only_the_range_and_keeps_the_rest_done() -> None:
    keys = [H.format(d=d, h=h, n=n) for d in (29, 30) for h in ("10", "11", "12") for n in (1, 2)]
    # Watermark at the 30th, 11:00: everything before was done without being listed.
    since = "year=2026/month=11/day=30/hour=11"
    mark = Bookmark(
        "posts", 3, frozenset(k for k in keys if k >= f"raw/posts/{since}"), since=since
    )
    first = "year=2026/month=11/day=29/hour=11"
    last = "year=2026/month=11/day=29/hour=12"
    listed = [k for k in keys if k >= f"raw/posts/{first}"]
    after = forget_hours(mark, listed, first, last)
    assert after.since == first
    forgotten = {k for k in keys if "day=29" in k and k >= f"raw/posts/{first}"}
    assert forgotten == set(listed) - after.processed
    assert {k for k in listed if "day=30" in k} <= after.processed  # outside the range: done


def registry(tmp_path: Path, names: tuple[str, ...]) -> DatasetRegistry:
    spec = "datasets:\n" + "".join(
        f"  {n}:\n    id_field: id\n    schema:\n      fields:\n        id: {{type: integer}}\n"
        for n in names
    )
    path = tmp_path / "datasets.yaml"
    path.write_text(spec)
    return DatasetRegistry.from_file(path)


def consumer_poison(reg: DatasetRegistry, data: bytes) -> dict[str, object]:
    router = Router(reg, "kinesis:s", dataset_field="dataset")
    arrival = datetime(2026, 11, 30, 10, tzinfo=UTC)
    target, line = router.route("shardId-000000000001", Record("4961", 0, "pk", data, arrival))
    assert target.zone is Zone.QUARANTINE  # unknown dataset
    return dict(orjson.loads(line))


def test_a_consumer_line_for_a_dataset_registered_since_is_recovered_with_its_id(
    tmp_path: Path,
) -> None:
    data = orjson.dumps({"dataset": "orders", "id": 7})
    doc = consumer_poison(registry(tmp_path, ("posts",)), data)
    now = registry(tmp_path, ("posts", "orders"))
    verdict = Rechecker(now, Router(now, "kinesis:s", dataset_field="dataset")).check(
        Origin.CONSUMER, doc
    )
    assert verdict.dataset == "orders"
    assert verdict.envelope is not None
    envelope = orjson.loads(verdict.envelope)
    assert (envelope["id"], envelope["received_at"]) == ("7", "2026-11-30T10:00:00.000Z")
    processing = Rechecker(now, Router(now, "s")).check(Origin.PROCESSING, doc)
    assert processing.envelope is None  # already in raw: never redriven


class Killed(Exception):
    """The process dies here."""


class CutAfterManifest(MemoryRawWriter):
    """Refuses the first raw put after a manifest: a run killed between the two."""

    cut = True

    async def put(self, obj: RawObject) -> WriteOutcome:
        if self.cut and obj.key.startswith("raw/"):
            self.cut = False
            raise Killed
        return await super().put(obj)


async def test_a_redrive_cut_after_its_manifest_is_completed_by_the_rerun(tmp_path: Path) -> None:
    reg = registry(tmp_path, ("posts",))
    lake = CutAfterManifest()
    lines = [
        orjson.dumps(
            {
                "v": 1,
                "dataset": "posts",
                "id": str(i),
                "source": "api:k",
                "received_at": "2026-11-30T10:00:00.000Z",
                "index": i,
                "errors": [{"field": "id", "message": "old rule"}],
                "data": {"id": i if i % 2 else "x"},
            }
        )
        for i in range(6)
    ]
    key = object_key(Zone.QUARANTINE, "posts", datetime(2026, 11, 30, 10, tzinfo=UTC), "api", "r1")
    await lake.put(RawObject(key, encode_ndjson_gz(lines), 6, "r1", "r1"))
    redriver = Redriver(lake, Rechecker(reg, Router(reg, "s")), SystemClock())
    request = RedriveRequest("posts", by="t", run_id="a")
    with pytest.raises(Killed):
        await redriver.run(request)
    assert [k for k in lake.objects if k.startswith(MANIFEST_PREFIX)]
    assert not [k for k in lake.objects if k.startswith("raw/")]
    rerun = await redriver.run(request)
    assert sum(rerun.recovered.values()) == 0  # the manifest had them
    assert sum(rerun.earlier.values()) == 3
    assert rerun.raw_objects == 1  # completed from the manifest
    raw = [o for k, o in lake.objects.items() if k.startswith("raw/")]
    assert len(raw) == 1
    ids = [orjson.loads(line)["id"] for line in decode_ndjson_gz(raw[0].body)]
    assert ids == ["1", "3", "5"]
    third = await redriver.run(request)
    assert (third.raw_objects, sum(third.stayed.values())) == (0, 3)
    assert lake.objects[key].body == encode_ndjson_gz(lines)  # untouched


def test_a_rewind_never_moves_a_checkpoint_forward() -> None:
    point = RewindPoint(datetime(2026, 11, 30, 10, tzinfo=UTC))
    found = ("500", datetime(2026, 11, 30, 10, tzinfo=UTC))
    behind = Lease("s", "w", 3, "400")
    past = Lease("s", "w", 3, "600")
    assert plan_shard(behind, point, found, None, "r") is Action.ALREADY_BEFORE
    assert plan_shard(past, point, found, None, "r") is Action.REWIND
    assert plan_shard(past, point, found, "r", "r") is Action.DONE
    assert plan_shard(past, point, None, None, "r") is Action.NOTHING_AFTER
    assert plan_shard(Lease("s", None, 0, "TRIM_HORIZON"), point, found, None, "r") is (
        Action.ALREADY_BEFORE
    )


async def test_history_lists_finished_runs_and_the_killed_one() -> None:
    store = MemoryRawWriter()
    log = HistoryLog(store, SystemClock())
    done = log.begin(Command.REDRIVE, "ann@host", {"dataset": "posts"}, dry_run=False)
    await log.started(done)
    await log.finished(done, {"recovered": 36})
    killed = log.begin(Command.REWIND, "bob@host", {"to": "TRIM_HORIZON"}, dry_run=False)
    await log.started(killed)
    dry = log.begin(Command.REPROCESS, "cy@host", {"dataset": "posts"}, dry_run=True)
    await log.started(dry)
    await log.finished(dry, {})
    runs = await log.runs()
    assert [(r.command, r.by, r.counts, r.finished_at is None) for r in runs] == [
        (Command.REDRIVE, "ann@host", {"recovered": 36}, False),
        (Command.REWIND, "bob@host", {}, True),
    ]  # a dry run is no history
    table = await history_table(store)
    assert "recovered=36" in table
    assert "not finished" in table


class StillClock:
    """Every call in the same millisecond: runs started together (a script) must keep order."""

    def now(self) -> datetime:
        return datetime(2026, 11, 30, 10, tzinfo=UTC)

    def monotonic(self) -> float:
        return 0.0


async def test_history_keeps_the_order_of_runs_started_in_one_millisecond() -> None:
    store = MemoryRawWriter()
    log = HistoryLog(store, StillClock())
    names = [f"user{i}@host" for i in range(12)]
    for name in names:
        run = log.begin(Command.REWIND, name, {"to": "TRIM_HORIZON"}, dry_run=False)
        await log.started(run)
        await log.finished(run, {"rewound": 1})
    assert [r.by for r in await log.runs()] == names


class MovableClock:
    """A clock the test moves."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


async def test_a_redrive_cut_and_rerun_the_next_day_lands_where_curate_still_looks(
    tmp_path: Path,
) -> None:
    reg = registry(tmp_path, ("posts",))
    lake = CutAfterManifest()
    line = {
        "v": 1,
        "dataset": "posts",
        "source": "api:k",
        "received_at": "2026-11-30T10:00:00.000Z",
        "index": 0,
        "errors": [{"field": "id", "message": "old rule"}],
    }
    lines = [orjson.dumps({**line, "id": str(i), "data": {"id": i}}) for i in (1, 3)]
    key = object_key(Zone.QUARANTINE, "posts", datetime(2026, 11, 30, 10, tzinfo=UTC), "api", "r1")
    await lake.put(RawObject(key, encode_ndjson_gz(lines), 2, "r1", "r1"))
    clock = MovableClock(datetime(2026, 11, 30, 10, 30, tzinfo=UTC))
    redriver = Redriver(lake, Rechecker(reg, Router(reg, "s")), clock)
    request = RedriveRequest("posts", by="t", run_id="a")
    with pytest.raises(Killed):
        await redriver.run(request)
    clock.at = datetime(2026, 12, 1, 9, 5, tzinfo=UTC)  # the next morning: far behind curate
    rerun = await redriver.run(request)
    assert rerun.raw_objects == 1
    raw = sorted(k for k in lake.objects if k.startswith("raw/"))
    assert len(raw) == 1
    assert raw[0].startswith("raw/posts/year=2026/month=12/day=01/hour=09/redrive-")
    ids = [orjson.loads(x)["id"] for x in decode_ndjson_gz(lake.objects[raw[0]].body)]
    assert ids == ["1", "3"]
    clock.at = datetime(2026, 12, 2, 9, tzinfo=UTC)  # and again a day later: nothing more
    third = await redriver.run(request)
    assert (third.raw_objects, sum(third.recovered.values()), sum(third.earlier.values())) == (
        0,
        0,
        2,
    )
    assert sorted(k for k in lake.objects if k.startswith("raw/")) == raw


class RenewingLeases(MemoryLeaseStore):
    """Its worker renews the lease between the rewind's read and its update, `busy` times."""

    busy = 3

    async def rewind(self, lease: Lease, to: RewindTo, record: Rewound) -> bool:
        if self.busy:
            self.busy -= 1
            stored = self.leases[lease.key]
            self.leases[lease.key] = replace(stored, counter=stored.counter + 1)
        return await super().rewind(lease, to, record)


def stream_with(records: int) -> MemoryStream:
    stream = MemoryStream(1)
    for i in range(records):
        stream.put(
            SHARD0, b'{"dataset": "posts"}', arrival=datetime(2026, 11, 30, 10, i, tzinfo=UTC)
        )
    return stream


SHARD0 = "shardId-000000000000"


# The leases here name an owner no worker runs as: it never releases, and the rewind fences it
# once this runs out (the default, 60 s, is for a real worker's drain).
NO_OWNER_S = 0.5


def rewinder(leases: MemoryLeaseStore, stream: MemoryStream) -> Rewinder:
    return Rewinder(leases, stream, MemoryRawWriter(), ["posts"], SystemClock())


async def test_a_rewind_retries_on_a_fresh_read_while_the_worker_renews() -> None:
    stream = stream_with(5)
    leases = RenewingLeases()
    third = stream.shards[SHARD0][2].sequence
    leases.leases[SHARD0] = Lease(SHARD0, "w1", 7, third, token="t")
    point = RewindPoint(datetime(2026, 11, 30, 10, 1, tzinfo=UTC))
    request = RewindRequest(point, frozenset(), "ann@host", "r1", release_timeout_s=NO_OWNER_S)
    (plan,) = await rewinder(leases, stream).run(request)
    assert plan.action is Action.REWIND
    assert leases.busy == 0
    row = leases.leases[SHARD0]
    assert (row.owner, row.checkpoint, row.timestamp) == (None, "AT_TIMESTAMP", point.at)
    assert row.rewound is not None
    assert (row.rewound.rewind_id, row.rewound.by) == ("r1", "ann@host")
    assert row.counter == 7 + 3 + 1  # three renewals, then the rewind
    (again,) = await rewinder(leases, stream).run(request)
    assert again.action is Action.DONE
    assert leases.leases[SHARD0] == row


async def test_a_rewind_before_a_split_whose_parent_lease_was_deleted_is_refused() -> None:
    stream = stream_with(3)
    children = ["shardId-000000000001", "shardId-000000000002"]
    stream.close(SHARD0, children, [SHARD0])
    leases = MemoryLeaseStore()
    for child in children:
        stream.put(child, b'{"dataset": "posts"}', arrival=datetime(2026, 11, 30, 11, tzinfo=UTC))
        leases.leases[child] = Lease(child, "w1", 2, stream.shards[child][0].sequence, token="t")
    before = dict(leases.leases)  # the parent's finished lease is gone (iss18 deletes it)
    point = RewindPoint(datetime(2026, 11, 30, 10, 1, tzinfo=UTC))
    with pytest.raises(PermanentError, match=f"{SHARD0} hold records .* have no lease"):
        await rewinder(leases, stream).run(RewindRequest(point, frozenset(), "ann@host", "r1"))
    assert leases.leases == before  # nothing rewound
    with pytest.raises(PermanentError, match="split or merged"):
        await rewinder(leases, stream).run(RewindRequest(point, frozenset({SHARD0}), "a", "r2"))
    after = RewindPoint(datetime(2026, 11, 30, 10, 30, tzinfo=UTC))  # after the parent's data
    plans = await rewinder(leases, stream).run(
        RewindRequest(after, frozenset(), "a", "r3", release_timeout_s=NO_OWNER_S)
    )
    assert [p.action for p in plans] == [Action.REWIND, Action.REWIND]


async def test_a_record_curate_rejects_again_after_a_redrive_stays_until_the_registry_changes(
    tmp_path: Path,
) -> None:
    """Valid by the validator, rejected by curate (no partition value, a cast): a redrive must
    not write it to raw again and again; a registry change makes it worth another try."""
    reg = registry(tmp_path, ("posts",))
    lake = MemoryRawWriter()
    api = {
        "v": 1,
        "dataset": "posts",
        "id": "7",
        "source": "api:k",
        "received_at": "2026-11-30T10:00:00.000Z",
        "index": 0,
        "errors": [{"field": "id", "message": "old rule"}],
        "data": {"id": 7},
    }
    hour = datetime(2026, 11, 30, 10, tzinfo=UTC)
    key = object_key(Zone.QUARANTINE, "posts", hour, "api", "r1")
    await lake.put(RawObject(key, encode_ndjson_gz([orjson.dumps(api)]), 1, "r1", "r1"))
    clock = MovableClock(datetime(2026, 11, 30, 11, tzinfo=UTC))
    first = await Redriver(lake, Rechecker(reg, Router(reg, "s")), clock).run(
        RedriveRequest("posts", by="t", run_id="a")
    )
    assert first.raw_objects == 1
    (raw_key,) = [k for k in lake.objects if k.startswith("raw/")]
    # Curate then quarantines that redrive's record for a check the validator does not make.
    (envelope,) = decode_ndjson_gz(lake.objects[raw_key].body)
    rejected = {
        "v": 1,
        "dataset": "posts",
        "stage": "curate",
        "raw_key": raw_key,
        "id": "7",
        "errors": [{"field": "_received_at", "message": "no partition value"}],
        "line": envelope.decode(),
    }
    name = raw_key.rsplit("/", 1)[-1].removesuffix(".ndjson.gz")
    again = object_key(Zone.QUARANTINE, "posts", clock.now(), "curate", name)
    await lake.put(RawObject(again, encode_ndjson_gz([orjson.dumps(rejected)]), 1, "c", "c"))
    clock.at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    for _ in range(2):
        run = await Redriver(lake, Rechecker(reg, Router(reg, "s")), clock).run(
            RedriveRequest("posts", by="t", run_id="b")
        )
        assert (run.raw_objects, sum(run.recovered.values())) == (0, 0)
        assert sum(run.stayed.values()) == 1
        assert "fix the registry" in " ".join(run.why.values())
    assert len([k for k in lake.objects if k.startswith("raw/")]) == 1
    v2 = tmp_path / "v2.yaml"  # posts' curated mapping changed: worth another try
    v2.write_text(
        "datasets:\n  posts:\n    id_field: id\n    schema:\n      fields:\n"
        "        id: {type: integer}\n    curated:\n      partition_by: _received_at\n"
        "      dedupe_lookback_days: 3\n"
    )
    fixed = DatasetRegistry.from_file(v2)
    later = await Redriver(lake, Rechecker(fixed, Router(fixed, "s")), clock).run(
        RedriveRequest("posts", by="t", run_id="c")
    )
    assert (later.raw_objects, sum(later.recovered.values())) == (1, 1)


async def test_a_new_rewind_to_a_point_used_before_says_it_changed_nothing() -> None:
    stream = stream_with(5)
    leases = MemoryLeaseStore()
    records = stream.shards[SHARD0]
    leases.leases[SHARD0] = Lease(SHARD0, "w1", 1, records[3].sequence, token="t")
    point = RewindPoint(None)
    request = RewindRequest(
        point, frozenset(), "ann@host", rewind_id(point, []), release_timeout_s=NO_OWNER_S
    )
    plans = await rewinder(leases, stream).run(request)
    assert nothing_new(plans, request, explicit_id=False) == ""  # it rewound
    # The worker consumes again past the point; next week, the same command:
    taken = await leases.take(leases.leases[SHARD0], "w1")
    assert taken is not None
    assert await leases.checkpoint(taken, records[4].sequence, {}) is not None
    again = await rewinder(leases, stream).run(request)
    assert [p.action for p in again] == [Action.DONE]
    assert leases.leases[SHARD0].checkpoint == records[4].sequence  # nothing changed…
    assert "pass a new --id" in nothing_new(again, request, explicit_id=False)  # …and it says so
    assert nothing_new(again, request, explicit_id=True) == ""  # an explicit rerun: fine


class EmptyPages(MemoryStream):
    """Every page empty and still behind: a sparse shard, or TRIM_HORIZON over expired data."""

    async def get_records(self, iterator: str, limit: int) -> Page:
        return Page([], iterator, 5_000, None, 0)


async def test_no_record_found_in_the_pages_read_is_not_nothing_after_the_point() -> None:
    stream = EmptyPages(1)
    with pytest.raises(TransientError, match="no record at or after TRIM_HORIZON in 50 pages"):
        await first_at(stream, SHARD0, RewindPoint(None))


class CountingGets(MemoryRawWriter):
    gets = 0

    async def get(self, key: str) -> bytes:
        self.gets += 1
        return await super().get(key)


async def test_a_refused_run_is_history_as_failed_and_status_reads_only_the_last_runs() -> None:
    store = CountingGets()
    log = HistoryLog(store, SystemClock())
    for i in range(100):
        run = log.begin(Command.REDRIVE, f"u{i}@host", {"dataset": "posts"}, dry_run=False)
        await log.started(run)
        await log.finished(run, {"recovered": i})
    refused = log.begin(Command.REWIND, "bob@host", {"shards": ["nope"]}, dry_run=False)
    await log.started(refused)
    with pytest.raises(PermanentError):
        async with log.failing(refused):
            raise PermanentError("no lease for shard(s) nope")
    store.gets = 0
    table = await history_table(store)
    assert store.gets <= 40
    assert "failed: no lease for shard(s) nope" in table
    assert "not finished" not in table
    assert "u99@host" in table
    assert "u79@host" not in table  # the last 20 runs only


async def test_a_bad_line_or_a_corrupt_object_does_not_stop_a_redrive(tmp_path: Path) -> None:
    data = orjson.dumps({"dataset": "orders", "id": 7})
    good = consumer_poison(registry(tmp_path, ("posts",)), data)
    reg = registry(tmp_path, ("posts", "orders"))
    bad = {**good, "id": "shardId-000000000001-4962", "received_at": "yesterday"}
    lake = MemoryRawWriter()
    hour = datetime(2026, 11, 30, 10, tzinfo=UTC)
    key = object_key(Zone.QUARANTINE, "unrouted", hour, "shardId-000000000001", "4961")
    body = encode_ndjson_gz([orjson.dumps(bad), orjson.dumps(good)])
    await lake.put(RawObject(key, body, 2, "a", "b"))
    broken = object_key(Zone.QUARANTINE, "orders", hour, "api", "zz")
    await lake.put(RawObject(broken, b"not gzip at all", 1, "a", "a"))
    router = Router(reg, "kinesis:s", dataset_field="dataset")
    tally = await Redriver(lake, Rechecker(reg, router), SystemClock()).run(
        RedriveRequest("orders", by="t", run_id="a")
    )
    assert sum(tally.recovered.values()) == 1
    assert "bad received_at 'yesterday'" in " ".join(tally.why.values())
    assert tally.stayed["quarantine object not readable (not gzip NDJSON)"] == 1
