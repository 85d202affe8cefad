"""Pages stream to the lake: peak memory does not grow with the size of the resource."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import httpx
import pytest

from tests.conftest import fake_vendor_api
from tributary.clock import SystemClock
from tributary.file_writer import FileRawWriter
from tributary.testing import MemoryMetrics
from tributary_importer.fetch import SourceClient
from tributary_importer.run import Importer
from tributary_importer.source import SourceSpec
from tributary_importer.state import MemoryStateStore


async def peak_bytes(url: str, lake: Path) -> tuple[int, int]:
    spec = SourceSpec.model_validate(
        {
            "base_url": url,
            "path": "/photos",
            "dataset": "photos",
            "rate_limit_rps": 10_000,
            "pagination": {
                "kind": "page_number",
                "page_param": "_page",
                "size_param": "_limit",
                "page_size": 100,
            },
        }
    )
    async with httpx.AsyncClient() as http:
        importer = Importer(FileRawWriter(lake), MemoryStateStore(), SystemClock(), MemoryMetrics())
        tracemalloc.start()
        try:
            result = await importer.run_once(SourceClient("photos", spec, http))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return result.records, peak


@pytest.mark.timeout(600)
async def test_peak_memory_does_not_grow_with_the_resource(tmp_path: Path) -> None:
    peaks = {}
    # The first run pays one-time costs (lazy imports, connection set-up): warm up unmeasured.
    for run, scale in enumerate((1, 1, 8)):  # then 5,000 and 40,000 photos
        with fake_vendor_api(tmp_path, scale) as url:
            records, peak = await peak_bytes(url, tmp_path / f"lake-{run}")
        assert records == 5_000 * scale
        if run:
            peaks[scale] = peak
    # 8× the records, about the same memory: even keeping every id (~60 B each) would show.
    assert peaks[8] < 1.3 * peaks[1], peaks
