"""The importer against the fake third-party API over the wire, landing in a memory lake."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import fake_vendor_api
from tests.importer.faults import Crash, CrashingStore, CrashingWriter
from tributary.batch import decode_ndjson_gz
from tributary.errors import PermanentError
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_importer.cursor import cursor_key
from tributary_importer.fetch import MIN_PAUSE_S, SourceClient, retry_after_seconds
from tributary_importer.run import Importer
from tributary_importer.source import SourceSpec
from tributary_importer.state import MemoryStateStore


@pytest.fixture(scope="module")
def fake_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fake_vendor_api(tmp_path_factory.mktemp("fakeapi")) as url:
        yield url


@pytest.fixture
async def http(fake_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client
        await client.put(f"{fake_url}/__admin/faults", json={})


def spec(url: str, path: str, dataset: str = "posts", **kw: Any) -> SourceSpec:
    return SourceSpec.model_validate(
        {"base_url": url, "path": path, "dataset": dataset, "rate_limit_rps": 500, **kw}
    )


def landed(writer: MemoryRawWriter) -> Counter[str]:
    return Counter(
        orjson.loads(line)["id"]
        for obj in writer.objects.values()
        for line in decode_ndjson_gz(obj.body)
    )


def primary_keys(ids: Counter[str]) -> Counter[str]:
    """`<pk>@<version>` ids by their primary key."""
    found = Counter[str]()
    for record_id, n in ids.items():
        found[record_id.split("@")[0]] += n
    return found


def importer(writer: MemoryRawWriter, store: MemoryStateStore) -> Importer:
    return Importer(writer, store, FakeClock(datetime(2026, 3, 1, 12, tzinfo=UTC)), MemoryMetrics())


PAGINATIONS = {
    "page_number": (
        "/posts",
        {"kind": "page_number", "page_param": "_page", "size_param": "_limit", "page_size": 30},
        {},
        None,
    ),
    "offset": (
        "/posts",
        {"kind": "offset", "offset_param": "_start", "size_param": "_limit", "page_size": 30},
        {},
        None,
    ),
    "cursor": (
        "/cursor/posts",
        {"kind": "cursor", "size_param": "limit", "page_size": 30},
        {},
        "data",
    ),
    "link_header": (
        "/posts",
        {"kind": "link_header", "size_param": "_limit", "page_size": 30},
        {"_page": "1"},
        None,
    ),
    "none": ("/posts", {"kind": "none"}, {}, None),
}


@pytest.mark.parametrize("kind", list(PAGINATIONS))
async def test_every_pagination_kind_lands_every_record_once(
    fake_url: str, http: httpx.AsyncClient, kind: str
) -> None:
    path, paging, params, records_path = PAGINATIONS[kind]
    writer, store = MemoryRawWriter(), MemoryStateStore()
    client = SourceClient(
        "posts",
        spec(fake_url, path, pagination=paging, params=params, records_path=records_path),
        http,
    )
    result = await importer(writer, store).run_once(client)
    assert primary_keys(landed(writer)) == Counter(str(i) for i in range(1, 101))
    assert result.pages == (1 if kind == "none" else 4)
    key = next(iter(writer.objects))
    hour = "year=2026/month=03/day=01/hour=12"
    assert key == f"raw/posts/{hour}/importer-posts-w000001.20260301T120000-p00001.ndjson.gz"
    first = orjson.loads(decode_ndjson_gz(writer.objects[key].body)[0])
    assert first["source"] == "importer:posts"
    assert set(first["data"]) == {"userId", "id", "title", "body"}


def items(url: str, **kw: Any) -> SourceSpec:
    return spec(
        url,
        "/changes/items",
        dataset="items",
        pagination={
            "kind": "page_number",
            "page_param": "_page",
            "size_param": "_limit",
            "page_size": 7,
        },
        incremental={
            "field": "updated_at",
            "param": "updated_since",
            "initial": "2026-01-01T00:00:00Z",
        },
        **kw,
    )


async def current_versions(http: httpx.AsyncClient, url: str) -> set[str]:
    rows = (await http.get(f"{url}/changes/items")).json()
    return {f"{r['id']}@{r['updated_at']}" for r in rows}


async def test_incremental_runs_pick_up_only_new_and_changed(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    writer, store = MemoryRawWriter(), MemoryStateStore()
    run = importer(writer, store)
    client = SourceClient("items", items(fake_url), http)
    first = await run.run_once(client)
    assert first.records == len(await current_versions(http, fake_url))
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 3, "added": 4})
    second = await run.run_once(client)
    assert second.records == 7  # 3 new versions of changed items + 4 new items
    third = await run.run_once(client)
    assert third.records == 0  # the boundary records are deduped, nothing else is new
    counts = landed(writer)
    assert max(counts.values()) == 1
    assert await current_versions(http, fake_url) <= set(counts)


async def test_full_refresh_relands_unchanged_records_under_the_same_ids(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    """No cursor: every run is a snapshot; ids are `<pk>@<content hash>`, so downstream dedupe
    keeps one copy of an unchanged record and every changed version."""
    writer = MemoryRawWriter()
    client = SourceClient("items", items(fake_url).model_copy(update={"incremental": None}), http)
    before = {r["id"]: r for r in (await http.get(f"{fake_url}/changes/items")).json()}
    await importer(writer, MemoryStateStore()).run_once(client)
    first = landed(writer)
    assert len(first) == len(before)
    assert max(first.values()) == 1
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 3, "added": 2})
    await importer(writer, MemoryStateStore()).run_once(client)
    after = {r["id"]: r for r in (await http.get(f"{fake_url}/changes/items")).json()}
    changed = {str(k) for k, r in after.items() if before.get(k) != r}
    assert len(changed) == 5
    ids = set(landed(writer))
    assert len(ids) == len(before) + 5  # an unchanged record keeps its id; 5 new versions
    assert {i.split("@")[0] for i in ids - set(first)} == changed


@pytest.mark.parametrize(
    ("crash_at", "after"),
    [("writer", False), ("writer", True), ("store", False), ("store", True)],
    ids=["before_page", "after_page", "before_state", "after_state"],
)
@pytest.mark.parametrize("occurrence", [1, 2])
async def test_crash_at_every_step_then_rerun_lands_each_version_once(
    fake_url: str, http: httpx.AsyncClient, crash_at: str, after: bool, occurrence: int
) -> None:
    """A crash before or after the 1st/2nd page write, or before or after the run-start and
    cursor writes of the state (the store's 1st and 2nd puts)."""
    writer, store = CrashingWriter(), CrashingStore()
    (writer if crash_at == "writer" else store).at = (occurrence, after)
    client = SourceClient("items", items(fake_url), http)
    with contextlib.suppress(Crash):
        await importer(writer, store).run_once(client)
    writer.at = store.at = None
    # The source moves on before the rerun: pages shift, versions change.
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 4, "added": 3})
    await importer(writer, store).run_once(client)
    counts = landed(writer)
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
    assert await current_versions(http, fake_url) <= set(counts)
    assert (await store.get("items")).run is None


async def test_transient_faults_are_retried_and_the_run_completes(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    await http.put(
        f"{fake_url}/__admin/faults",
        json={"error_rate": 0.3, "truncate_rate": 0.2, "rate_limit_rps": 40, "retry_after": "0"},
    )
    writer, store = MemoryRawWriter(), MemoryStateStore()
    client = SourceClient(
        "posts",
        spec(
            fake_url,
            "/posts",
            max_attempts=12,
            pagination={
                "kind": "page_number",
                "page_param": "_page",
                "size_param": "_limit",
                "page_size": 10,
            },
        ),
        http,
    )
    await importer(writer, store).run_once(client)
    assert primary_keys(landed(writer)) == Counter(str(i) for i in range(1, 101))
    assert client.retries > 0
    stats = (await http.get(f"{fake_url}/__admin/stats")).json()
    assert {"503", "truncated"} <= set(stats["injected"])


async def test_client_errors_fail_the_run_without_moving_the_cursor(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    writer, store = MemoryRawWriter(), MemoryStateStore()
    client = SourceClient("nope", spec(fake_url, "/no-such-resource"), http)
    with pytest.raises(PermanentError, match=r"HTTP 404 .* check the source's URL"):
        await importer(writer, store).run_once(client)
    assert (await store.get("nope")).cursor is None
    assert not writer.objects


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds("0") == MIN_PAUSE_S  # never a zero pause: no spinning
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:03 GMT", now) == 3
    assert retry_after_seconds("soon") == MIN_PAUSE_S
    assert retry_after_seconds(None) == MIN_PAUSE_S


def test_cursor_values_order_integers_exactly_and_timestamps_as_instants() -> None:
    assert cursor_key("9") < cursor_key("10")
    assert cursor_key("9007199254740992") < cursor_key("9007199254740993")  # 2^53, 2^53 + 1
    assert cursor_key("1000000000000000001") < cursor_key("1000000000000000002")
    assert cursor_key("1.5") < cursor_key("2") < cursor_key("2.25")
    assert cursor_key("2026-01-01T00:00:09Z") < cursor_key("2026-01-01T00:00:10Z")
    assert cursor_key("2026-01-01T00:00:01Z") < cursor_key("2026-01-01T00:00:01.250Z")
    assert cursor_key("2026-01-01T02:00:00+02:00") == cursor_key("2026-01-01T00:00:00Z")
    assert cursor_key("2026-01-01T02:00:00+02:00") < cursor_key("2026-01-01T01:00:00Z")
    assert cursor_key("2026-01-01T00:00:00") == cursor_key("2026-01-01T00:00:00+00:00")
    assert cursor_key("2026-01-01T00:00:00.1234567Z") < cursor_key("2026-01-01T00:00:00.1234568Z")
    assert cursor_key("2026-01-01T00:00:00.123456Z") == cursor_key("2026-01-01T00:00:00.1234560Z")
    assert cursor_key("abc") < cursor_key("abd")


def mixed(url: str, field: str, param: str, initial: str) -> SourceSpec:
    return spec(
        url,
        "/changes/mixed",
        dataset="items",
        pagination={
            "kind": "page_number",
            "page_param": "_page",
            "size_param": "_limit",
            "page_size": 7,
        },
        incremental={"field": field, "param": param, "initial": initial},
    )


async def test_timestamp_cursors_compare_as_instants_across_formats_and_offsets(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    """The vendor spells `updated_at` three ways (Z, +02:00, milliseconds): as text,
    "…T02:00:49+02:00" sorts after "…T00:00:50.250Z", the cursor stops short, and the next run
    lands the records past it again."""
    writer, store = MemoryRawWriter(), MemoryStateStore()
    run = importer(writer, store)
    client = SourceClient(
        "mixed", mixed(fake_url, "updated_at", "updated_since", "2026-01-01T00:00:00Z"), http
    )
    served = (await http.get(f"{fake_url}/changes/mixed")).json()
    first = await run.run_once(client)
    assert first.records == len(served)
    assert first.cursor == served[-1]["updated_at"]  # the latest instant, not the largest text
    assert (await run.run_once(client)).records == 0
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 3, "added": 4})
    assert (await run.run_once(client)).records == 7
    assert max(landed(writer).values()) == 1


async def test_integer_cursors_compare_exactly_past_2_to_the_53(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    writer, store = MemoryRawWriter(), MemoryStateStore()
    run = importer(writer, store)
    client = SourceClient("seq", mixed(fake_url, "seq", "seq_since", "0"), http)
    served = (await http.get(f"{fake_url}/changes/mixed")).json()
    top = max(r["seq"] for r in served)
    first = await run.run_once(client)
    assert first.cursor == str(top)  # as floats, all of 10^18 + 1 … 10^18 + n are one value
    second = await run.run_once(client)
    assert (second.records, second.skipped) == (0, 1)  # only the boundary record is re-read
    assert max(landed(writer).values()) == 1


@pytest.mark.parametrize(
    ("field", "param", "initial"),
    [("big", "big_since", "0"), ("rev", "rev_since", "0")],
    ids=["integers_past_2_to_the_64", "decimals_finer_than_a_float"],
)
async def test_json_number_cursors_are_read_exactly(
    fake_url: str, http: httpx.AsyncClient, field: str, param: str, initial: str
) -> None:
    """orjson decodes 2^64 + n and 1.000…0n as floats: as floats, every record shares one
    version, so each run would take the newer ones for the boundary and skip them."""
    writer, store = MemoryRawWriter(), MemoryStateStore()
    run = importer(writer, store)
    client = SourceClient(field, mixed(fake_url, field, param, initial), http)
    served = (await http.get(f"{fake_url}/changes/mixed")).content.decode()
    count = len((await http.get(f"{fake_url}/changes/mixed")).json())
    first = await run.run_once(client)
    assert first.records == count
    assert len(set(landed(writer))) == count  # one id per record: pk@<exact value>
    assert first.cursor is not None
    assert first.cursor in served  # the literal, not a float
    await http.post(f"{fake_url}/__admin/advance", params={"changed": 0, "added": 3})
    second = await run.run_once(client)
    assert (second.records, second.skipped) == (3, 1)  # the 3 new ones; the boundary re-read
    assert max(landed(writer).values()) == 1


async def test_a_resumed_run_keeps_exact_json_number_cursors(
    fake_url: str, http: httpx.AsyncClient
) -> None:
    """The landed data holds the decoder's float; the resumed run takes the exact value from
    the id, so the look-back it stores still dedupes the boundary record."""
    writer, store = CrashingWriter(), CrashingStore()
    writer.at = (1, True)  # dies after the first page landed
    client = SourceClient("big", mixed(fake_url, "big", "big_since", "0"), http)
    with contextlib.suppress(Crash):
        await importer(writer, store).run_once(client)
    writer.at = None
    resumed = await importer(writer, store).run_once(client)
    assert resumed.resumed
    top = max(r["big"] for r in (await http.get(f"{fake_url}/changes/mixed")).json())
    assert resumed.cursor == str(top)
    assert set((await store.get("big")).seen.values()) == {str(top)}
    again = await importer(writer, store).run_once(client)
    assert (again.records, again.skipped) == (0, 1)
    assert max(landed(writer).values()) == 1
