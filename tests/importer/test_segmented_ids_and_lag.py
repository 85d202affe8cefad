"""Windowed and child runs as the flat one, over the wire from the fake API: the
`CursorLagSeconds` gauge (EMF) after a run that moved the cursor, and, for a dataset with a
`version_field`, the `<id>@<version>` envelope ids the API and the consumer make. The version
tests declare `items` with `version_field: name` (the fake gives a changed item a new name),
not the cursor field `updated_at`: an incremental run's ids would read `<id>@<updated_at>`
whether or not the version field were applied, and the tests could not fail."""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import DATASETS_CONFIG
from tests.importer.faults import Crash, CrashingStore, CrashingWriter
from tests.importer.test_import import fake_url, http
from tests.importer.test_segmented import events, sources, user_items
from tests.importer.test_versions import landed
from tributary.dataset import DatasetRegistry
from tributary.metrics import EmfMetrics
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_importer.clients import client_for
from tributary_importer.run import Importer
from tributary_importer.state import MemoryStateStore

__all__ = ["fake_url", "http"]  # the module-scoped fixtures

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SHIPPED_VERSION = "version_field: updated_at  #"


@pytest.fixture(scope="module")
def by_name() -> DatasetRegistry:
    """The shipped registry with `items` versioned by `name`, a field that is not the cursor."""
    text = DATASETS_CONFIG.read_text()
    assert text.count(SHIPPED_VERSION) == 1  # the items dataset's, and only it
    return DatasetRegistry.from_yaml(text.replace(SHIPPED_VERSION, "version_field: name  #"))


def named_id(record: dict[str, Any]) -> str:
    """The id the registry above gives an item: `<id>@<name>`."""
    return f"{record['id']}@{record['name']}"


def lag_docs(out: io.StringIO) -> dict[str, tuple[float, list[dict[str, str]]]]:
    """CursorLagSeconds by source, with its EMF metric declaration, from flushed EMF lines."""
    found: dict[str, tuple[float, list[dict[str, str]]]] = {}
    for line in out.getvalue().splitlines():
        doc = orjson.loads(line)
        if "CursorLagSeconds" in doc:
            declared = doc["_aws"]["CloudWatchMetrics"][0]
            assert declared["Dimensions"] == [["service", "source"]]
            found[doc["source"]] = (doc["CursorLagSeconds"], declared["Metrics"])
    return found


async def test_windowed_and_child_runs_emit_the_cursor_lag_as_the_flat_run_does(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    declared = sources(
        fake_url,
        ev=events(fake_url),
        **user_items(fake_url),
        flat={**user_items(fake_url)["user_items"], "path": "/users/3/items", "resolve": {}},
    )
    out = io.StringIO()
    metrics = EmfMetrics("Tributary", "importer", out)
    run = Importer(MemoryRawWriter(), MemoryStateStore(), FakeClock(NOW), metrics)
    cursors = {}
    for name in ("flat", "ev", "user_items"):
        cursors[name] = (await run.run_once(client_for(name, declared, http))).cursor
    metrics.flush()
    lags = lag_docs(out)
    assert set(lags) == {"flat", "ev", "user_items"}
    for name, cursor in cursors.items():
        assert cursor is not None
        at = datetime.fromisoformat(cursor)
        assert lags[name][0] == (NOW - at).total_seconds(), name
        assert lags[name][1] == lags["flat"][1]  # declared as the flat run declares it
    # the newest record's age, not the run's reach: the last event (the run covered every
    # window up to NOW), and for the child the highest cursor over every parent (user)
    assert cursors["ev"] == "2025-12-17T00:00:00Z"
    served = (await http.get(f"{fake_url}/changes/items")).json()
    assert cursors["user_items"] == max(i["updated_at"] for i in served)


async def test_a_backfill_of_a_windowed_source_emits_no_cursor_lag(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    """A backfill moves no cursor: no lag to report (as the flat backfill). A regression guard:
    it passed before the windowed runner emitted any lag."""
    declared = sources(fake_url, ev=events(fake_url))
    metrics = MemoryMetrics()
    run = Importer(MemoryRawWriter(), MemoryStateStore(), FakeClock(NOW), metrics)
    await run.backfill(client_for("ev", declared, http), "2025-01-01T07:00:00Z", "2025-01-03")
    assert not [k for k in metrics.gauges if k[0] == "CursorLagSeconds"]


def versioned(url: str) -> dict[str, dict[str, Any]]:
    """Items of one user in 30-day windows (the end sent as `updated_before`), and the items
    of every user as a child of `users`, once incremental and once a full refresh."""
    child = user_items(url)
    window: dict[str, Any] = {
        **child["user_items"],
        "path": "/users/3/items",
        "resolve": {},
        "incremental": {
            **child["user_items"]["incremental"],
            "end_param": "updated_before",
            "step": "30d",
        },
    }
    snapshot = {k: v for k, v in child["user_items"].items() if k != "incremental"}
    return {**child, "windowed": window, "child_snapshot": snapshot}


async def served_items(http: httpx.AsyncClient, url: str, user: int | None) -> dict[int, Any]:
    rows = (await http.get(f"{url}/changes/items")).json()
    return {r["id"]: r for r in rows if user is None or (r["id"] - 1) % 10 + 1 == user}


@pytest.mark.parametrize(
    ("name", "user"),
    [("windowed", 3), ("user_items", None), ("child_snapshot", None)],
    ids=["windowed", "child", "child_full_refresh"],
)
async def test_windowed_and_child_runs_make_the_apis_version_ids(
    fake_url: str, http: httpx.AsyncClient, by_name: DatasetRegistry, name: str, user: int | None
) -> None:
    """`items` versioned by `name`: every id is `<id>@<name>` as the API's (a full refresh too,
    not a content hash); after the vendor changes items, an incremental run lands exactly the
    new versions, a full refresh the whole snapshot again."""
    dataset = by_name["items"]
    declared = sources(fake_url, **versioned(fake_url))
    writer, store = MemoryRawWriter(), MemoryStateStore()
    run = Importer(writer, store, FakeClock(NOW), MemoryMetrics(), by_name)
    before = await served_items(http, fake_url, user)
    await run.run_once(client_for(name, declared, http))
    first = [str(line["id"]) for line in landed(writer)]
    assert sorted(first) == sorted(named_id(r) for r in before.values())
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 20, "added": 0})
    after = await served_items(http, fake_url, user)
    changed = {k for k, r in after.items() if before[k] != r}
    assert changed
    await run.run_once(client_for(name, declared, http))
    ids = Counter(str(line["id"]) for line in landed(writer))
    for line in landed(writer):
        assert line["id"] == named_id(line["data"]) == dataset.envelope_id(line["data"])
    new = set(ids) - set(first)
    assert new == {named_id(after[k]) for k in changed}
    if name == "child_snapshot":  # the unchanged records again, under the same ids
        assert sum(ids.values()) == len(before) + len(after)
    else:
        assert max(ids.values()) == 1


@pytest.mark.parametrize(
    ("crash_at", "at"),
    [("writer", (3, True)), ("store", (3, True))],
    ids=["after_a_page", "after_a_checkpoint"],
)
@pytest.mark.parametrize("name", ["windowed", "user_items"])
async def test_a_crashed_windowed_or_child_run_resumed_keeps_the_version_ids_once(
    fake_url: str,
    http: httpx.AsyncClient,
    by_name: DatasetRegistry,
    name: str,
    crash_at: str,
    at: tuple[int, bool],
) -> None:
    """A crash, the vendor changes items, the resume: every id once and the API's, every
    current version there."""
    declared = sources(fake_url, **versioned(fake_url))
    writer, store = CrashingWriter(), CrashingStore()
    (writer if crash_at == "writer" else store).at = at
    with contextlib.suppress(Crash):
        await Importer(writer, store, FakeClock(NOW), MemoryMetrics(), by_name).run_once(
            client_for(name, declared, http)
        )
    writer.at = store.at = None
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 6, "added": 2})
    await Importer(writer, store, FakeClock(NOW), MemoryMetrics(), by_name).run_once(
        client_for(name, declared, http)
    )
    ids = Counter(str(line["id"]) for line in landed(writer))
    assert max(ids.values()) == 1, [k for k, n in ids.items() if n > 1]
    for line in landed(writer):
        assert line["id"] == named_id(line["data"])
    current = await served_items(http, fake_url, 3 if name == "windowed" else None)
    assert {named_id(r) for r in current.values()} <= set(ids)
