"""A dataset with a `version_field`: the importer, over the wire from the fake API, makes the
same `<id>@<version>` ids the API and the consumer make, whatever the vendor's spelling."""

from __future__ import annotations

import contextlib
from collections import Counter
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from tests.importer.faults import Crash, CrashingStore, CrashingWriter
from tests.importer.test_import import fake_url, http, importer, items, mixed  # noqa: F401
from tributary.batch import decode_ndjson_gz
from tributary.dataset import DatasetRegistry
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_importer.cursor import type_of
from tributary_importer.fetch import SourceClient
from tributary_importer.run import Importer
from tributary_importer.state import MemoryStateStore


def landed(writer: MemoryRawWriter) -> list[dict[str, object]]:
    return [
        orjson.loads(line) for obj in writer.objects.values() for line in decode_ndjson_gz(obj.body)
    ]


def utc_spelling(text: str) -> str:
    """An independent spelling of the instant: UTC, `Z`, milliseconds only when there are."""
    at = datetime.fromisoformat(text).astimezone(UTC)
    fraction = f".{at.microsecond // 1000:03d}".rstrip("0").rstrip(".")
    return at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


async def test_versions_without_a_cursor_get_the_version_not_a_content_hash(
    fake_url: str,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
    registry: DatasetRegistry,
) -> None:
    """A full-refresh source of mixed spellings (Z, +02:00, milliseconds) into `items`."""
    writer = MemoryRawWriter()
    spec = items(fake_url).model_copy(update={"incremental": None, "path": "/changes/mixed"})
    run = Importer(
        writer,
        MemoryStateStore(),
        FakeClock(datetime(2026, 3, 1, 12, tzinfo=UTC)),
        MemoryMetrics(),
        registry,
    )
    await run.run_once(SourceClient("items", spec, http))
    lines = landed(writer)
    assert lines
    offsets = set()
    for line in lines:
        data = line["data"]
        assert isinstance(data, dict)
        offsets.add(str(data["updated_at"])[19:])
        assert line["id"] == f"{data['id']}@{utc_spelling(str(data['updated_at']))}"
        assert line["id"] == registry["items"].envelope_id(data)  # what the API makes
    assert {"Z", "+02:00"} <= offsets


async def test_a_snapshot_again_relands_every_record_under_its_version_id_and_one_per_change(
    fake_url: str,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
    registry: DatasetRegistry,
) -> None:
    """A full-refresh source re-lands the whole snapshot (deduped by id downstream): an
    unchanged record under the same `<id>@<version>`, a changed one under exactly its new one."""
    dataset = registry["items"]
    writer = MemoryRawWriter()
    spec = items(fake_url).model_copy(update={"incremental": None})
    clock = FakeClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    run = Importer(writer, MemoryStateStore(), clock, MemoryMetrics(), registry)
    await run.run_once(SourceClient("items", spec, http))
    first = {str(line["id"]) for line in landed(writer)}
    before = await current_items(http, fake_url, "/changes/items")
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 2, "added": 0})
    after = await current_items(http, fake_url, "/changes/items")
    await run.run_once(SourceClient("items", spec, http))
    ids = [str(line["id"]) for line in landed(writer)]
    assert len(ids) == len(before) + len(after)  # two whole snapshots
    assert first == {dataset.envelope_id(r) for r in before.values()}
    changed = [r for k, r in after.items() if before[k] != r]
    assert len(changed) == 2
    assert set(ids) - first == {dataset.envelope_id(r) for r in changed}


def versioned_importer(
    writer: MemoryRawWriter, store: MemoryStateStore, registry: DatasetRegistry
) -> Importer:
    """The importer as `tributary_importer.__main__` builds it: with the dataset registry."""
    clock = FakeClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    return Importer(writer, store, clock, MemoryMetrics(), registry)


async def current_items(
    api: httpx.AsyncClient, url: str, path: str = "/changes/mixed"
) -> dict[int, dict[str, object]]:
    return {r["id"]: r for r in (await api.get(f"{url}{path}")).json()}


@pytest.mark.parametrize("path", ["/changes/items", "/changes/mixed"])
async def test_incremental_runs_land_one_new_version_per_changed_item_and_skip_the_boundary(
    fake_url: str,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
    registry: DatasetRegistry,
    path: str,
) -> None:
    """The shipped `items` source (incremental on `updated_at`) with the registry, as in
    production: run, the vendor changes 3 items, run again, run a third time."""
    dataset = registry["items"]
    writer, store = MemoryRawWriter(), MemoryStateStore()
    client = SourceClient("items", items(fake_url).model_copy(update={"path": path}), http)
    first = await versioned_importer(writer, store, registry).run_once(client)
    before = await current_items(http, fake_url, path)
    assert first.records == len(before)
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 3, "added": 0})
    after = await current_items(http, fake_url, path)
    changed = [r for k, r in after.items() if before[k] != r]
    assert len(changed) == 3
    ids_before = set(ids_of(writer))
    second = await versioned_importer(writer, store, registry).run_once(client)
    assert second.records == 3
    new = set(ids_of(writer)) - ids_before
    assert new == {dataset.envelope_id(r) for r in changed}
    third = await versioned_importer(writer, store, registry).run_once(client)
    assert third.records == 0
    assert third.skipped >= 1  # the boundary record came back unchanged: skipped, not relanded
    assert max(Counter(ids_of(writer)).values()) == 1
    assert {dataset.envelope_id(r) for r in after.values()} <= set(ids_of(writer))


def ids_of(writer: MemoryRawWriter) -> list[str]:
    return [str(line["id"]) for line in landed(writer)]


@pytest.mark.parametrize(
    ("crash_at", "after"),
    [("writer", False), ("writer", True), ("store", False), ("store", True)],
    ids=["before_page", "after_page", "before_state", "after_state"],
)
@pytest.mark.parametrize(
    ("field", "param", "initial"),
    [("updated_at", "updated_since", "2026-01-01T00:00:00Z"), ("seq", "seq_since", "0")],
    ids=["cursor_is_version", "cursor_is_not_version"],
)
async def test_a_crashed_versioned_run_resumed_lands_no_id_twice(
    fake_url: str,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
    registry: DatasetRegistry,
    crash_at: str,
    after: bool,
    field: str,
    param: str,
    initial: str,
) -> None:
    """A crash before/after the 2nd page write or the run-start/cursor state write, the vendor
    moves on, the rerun resumes: every id once, every current version there, ids the API's.
    With the `seq` cursor the id's version (`updated_at`) is not the cursor value."""
    dataset = registry["items"]
    writer, store = CrashingWriter(), CrashingStore()
    (writer if crash_at == "writer" else store).at = (2, after)
    client = SourceClient("items", mixed(fake_url, field, param, initial), http)
    with contextlib.suppress(Crash):
        await versioned_importer(writer, store, registry).run_once(client)
    writer.at = store.at = None
    known = set(await current_items(http, fake_url))
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 4, "added": 3})
    resumed = await versioned_importer(writer, store, registry).run_once(client)
    counts = Counter(ids_of(writer))
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
    for line in landed(writer):
        data = line["data"]
        assert isinstance(data, dict)
        assert line["id"] == dataset.envelope_id(data)
    current = await current_items(http, fake_url)
    if field == "seq":  # `seq` is per item, not per version: a seq cursor sees new items only
        current = {k: r for k, r in current.items() if k not in known}
    assert {dataset.envelope_id(r) for r in current.values()} <= set(counts)
    state = await store.get("items")
    assert state.run is None
    # The look-back the next run dedupes by holds cursor values (not the ids' versions), so it
    # is trimmed to the look-back window rather than kept forever.
    inc = client.spec.incremental
    assert inc is not None
    assert state.seen
    assert {type_of(v) for v in state.seen.values()} == {inc.cursor_type()}
    again = await versioned_importer(writer, store, registry).run_once(client)
    assert again.records == 0, resumed
    assert max(Counter(ids_of(writer)).values()) == 1
