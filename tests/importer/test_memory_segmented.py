"""A windowed run (an `end_param`, no `step`: one long window) and a child with many children
prune their look-back page by page, as a flat run does: peak memory does not grow with the
window. The vendor is in-process (httpx.MockTransport: 40,000 records at the fake's 31-day cap
would need a denser fake); pages land on disk (`FileRawWriter`)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from tests.importer.test_segmented import sources
from tributary.clock import SystemClock
from tributary.file_writer import FileRawWriter
from tributary.testing import MemoryMetrics
from tributary_importer.clients import client_for
from tributary_importer.run import Importer
from tributary_importer.source import DeclaredSource
from tributary_importer.state import MemoryStateStore

START = datetime(2025, 1, 1, tzinfo=UTC)
PAGE = 100


def vendor(records: int) -> httpx.MockTransport:
    """`/events?since=&until=&page=`, and `/owners` (one owner) whose `/owners/1/events` are
    the same events."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/owners":
            return httpx.Response(200, json=[{"id": 1}])
        page = int(request.url.params.get("page", "1"))
        first = (page - 1) * PAGE
        body = [
            {"id": i, "at": (START + timedelta(seconds=i)).isoformat(), "v": "x" * 40}
            for i in range(first, min(first + PAGE, records))
        ]
        return httpx.Response(200, content=orjson.dumps(body))

    return httpx.MockTransport(answer)


def declared(url: str, child: bool) -> dict[str, DeclaredSource]:
    incremental = {
        "field": "at",
        "param": "since",
        "end_param": "until",
        "initial": "2024-12-01T00:00:00Z",
        "end_value": "2026-01-01T00:00:00Z",
    }
    paging = {"kind": "page_number", "size_param": "n", "page_size": PAGE}
    events: dict[str, object] = {
        "path": "/owners/{oid}/events" if child else "/events",
        "dataset": "events",
        "rate_limit_rps": 100_000,
        "pagination": paging,
        "incremental": incremental,
    }
    if child:
        events["resolve"] = {"oid": {"resource": "owners", "field": "id"}}
    return sources(url, owners={"path": "/owners", "dataset": "owners"}, events=events)


async def peak_bytes(records: int, lake: Path, child: bool) -> int:
    url = "https://vendor.test"
    async with httpx.AsyncClient(transport=vendor(records)) as http:
        importer = Importer(FileRawWriter(lake), MemoryStateStore(), SystemClock(), MemoryMetrics())
        client = client_for("events", declared(url, child), http)
        tracemalloc.start()
        try:
            result = await importer.run_once(client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.records == records
    return peak


@pytest.mark.timeout(600)
@pytest.mark.parametrize("child", [False, True], ids=["one_long_window", "one_parent"])
async def test_peak_memory_of_a_segment_does_not_grow_with_its_records(
    tmp_path: Path, child: bool
) -> None:
    peaks = {}
    for run, records in enumerate((5_000, 5_000, 40_000)):  # the first warms up, unmeasured
        peak = await peak_bytes(records, tmp_path / f"lake-{run}", child)
        if run:
            peaks[records] = peak
    # 8× the records, about the same memory: keeping every id (~150 B each) would show
    assert peaks[40_000] < 1.3 * peaks[5_000], peaks
