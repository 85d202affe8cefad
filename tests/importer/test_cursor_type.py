"""A source's cursor has one type (number, timestamp or text): a value of another type fails the
run naming the record, with the cursor unmoved; records without the field land and leave the
cursor alone, on a first attempt and on resume."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tributary.errors import ConfigError, PermanentError
from tributary.raw_writer import RawObject, WriteOutcome
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_importer.fetch import SourceClient
from tributary_importer.run import Importer
from tributary_importer.source import SourceSpec, load_sources
from tributary_importer.state import MemoryStateStore


def source(rows: list[dict[str, Any]], **incremental: Any) -> SourceSpec:
    return SourceSpec.model_validate(
        {
            "base_url": "http://vendor.test",
            "path": "/changes",
            "dataset": "items",
            "rate_limit_rps": 10_000,
            "concurrency": 1,
            "pagination": {
                "kind": "page_number",
                "page_param": "page",
                "size_param": "limit",
                "page_size": 2,
            },
            "incremental": {"field": "at", "param": "since", **incremental},
        }
    )


def vendor(rows: list[dict[str, Any]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return httpx.Response(200, json=rows[(page - 1) * 2 : page * 2])

    return httpx.MockTransport(handle)


async def run(rows: list[dict[str, Any]], store: MemoryStateStore, **incremental: Any) -> Any:
    writer = MemoryRawWriter()
    importer = Importer(writer, store, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), MemoryMetrics())
    async with httpx.AsyncClient(transport=vendor(rows)) as http:
        return await importer.run_once(SourceClient("items", source(rows, **incremental), http))


TS = {"initial": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("bad", "kw"),
    [("N/A", TS), (1767225600, TS), ("2026-01-02T00:00:00Z", {"initial": "0"})],
    ids=[
        "text_in_a_timestamp_cursor",
        "epoch_number_in_a_timestamp_cursor",
        "timestamp_in_a_number_cursor",
    ],
)
async def test_a_value_of_another_type_fails_the_run_naming_the_record(
    bad: Any, kw: dict[str, str]
) -> None:
    good = "2026-01-02T00:00:00Z" if kw is TS else 5
    rows = [{"id": 1, "at": good}, {"id": 2, "at": good}, {"id": 3, "at": bad}]
    store = MemoryStateStore()
    with pytest.raises(PermanentError, match=r"record id=3 has at=.* not a (timestamp|number)"):
        await run(rows, store, **kw)
    assert (await store.get("items")).cursor is None


async def test_records_without_the_cursor_field_land_and_leave_the_cursor_alone() -> None:
    rows = [
        {"id": 1, "at": "2026-01-02T00:00:00Z"},
        {"id": 2},
        {"id": 3, "at": None},
        {"id": 4, "at": "2026-01-03T00:00:00Z"},
    ]
    store = MemoryStateStore()
    result = await run(rows, store, **TS)
    assert (result.records, result.cursor) == (4, "2026-01-03T00:00:00Z")
    assert set((await store.get("items")).seen.values()) == {"2026-01-03T00:00:00Z"}


async def test_resume_keeps_no_none_for_records_without_the_field() -> None:
    class DiesAfterFirstPage(MemoryRawWriter):
        async def put(self, obj: RawObject) -> WriteOutcome:
            outcome = await super().put(obj)
            raise RuntimeError("crash after the first page landed")
            return outcome  # pragma: no cover

    rows = [{"id": 1}, {"id": 2, "at": "2026-01-02T00:00:00Z"}, {"id": 3}]
    store = MemoryStateStore()
    dying = DiesAfterFirstPage()
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    async with httpx.AsyncClient(transport=vendor(rows)) as http:
        client = SourceClient("items", source(rows, **TS), http)
        with pytest.raises(RuntimeError):
            await Importer(dying, store, clock, MemoryMetrics()).run_once(client)
        writer = MemoryRawWriter()
        writer.objects.update(dying.objects)
        result = await Importer(writer, store, clock, MemoryMetrics()).run_once(client)
    assert result.resumed
    assert (result.records, result.skipped) == (1, 2)
    assert set((await store.get("items")).seen.values()) == {"2026-01-02T00:00:00Z"}


def test_a_declared_type_must_fit_initial(tmp_path: Any) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n  s:\n    base_url: http://x\n    path: /p\n    dataset: items\n"
        "    incremental: {field: at, param: since, initial: '0', type: timestamp}\n"
    )
    with pytest.raises(ConfigError, match=r"initial '0' is not a timestamp cursor value"):
        load_sources(path, {})
    assert source([], initial="0", type="text").incremental is not None


async def test_a_declared_text_cursor_compares_every_value_as_text() -> None:
    rows = [{"id": 1, "at": "10"}, {"id": 2, "at": "9"}, {"id": 3, "at": "a-7"}]
    result = await run(rows, MemoryStateStore(), initial="0", type="text")
    assert (result.records, result.cursor) == (3, "a-7")  # "10" < "9" < "a-7" as text
