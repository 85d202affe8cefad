"""The shipped `users` and `orders` sources (config/sources.yaml) against the fake vendor API
over the wire: every record lands once, and every one is valid for the registry's dataset (the
API's and curate's validator)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import DATASETS_CONFIG, REPO, fake_vendor_api
from tributary.batch import decode_ndjson_gz
from tributary.dataset import DatasetRegistry
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_importer.fetch import SourceClient
from tributary_importer.run import Importer
from tributary_importer.source import load_sources
from tributary_importer.state import MemoryStateStore


@pytest.fixture(scope="module")
def fake_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fake_vendor_api(tmp_path_factory.mktemp("fakeapi")) as url:
        yield url


@pytest.mark.parametrize(("source", "count"), [("users", 10), ("orders", 50)])
async def test_shipped_source_lands_valid_records(fake_url: str, source: str, count: int) -> None:
    declared = load_sources(REPO / "config" / "sources.yaml", {"FAKEAPI_URL": fake_url})
    spec = declared[source].ready()
    dataset = DatasetRegistry.from_file(Path(DATASETS_CONFIG))[spec.dataset]
    writer = MemoryRawWriter()
    clock = FakeClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    async with httpx.AsyncClient() as http:
        importer = Importer(writer, MemoryStateStore(), clock, MemoryMetrics())
        await importer.run_once(SourceClient(source, spec, http))
    envelopes = [
        orjson.loads(line) for obj in writer.objects.values() for line in decode_ndjson_gz(obj.body)
    ]
    assert sorted(int(e["id"].split("@")[0]) for e in envelopes) == list(range(1, count + 1))
    for envelope in envelopes:
        assert dataset.validator.errors(envelope["data"]) == [], envelope
    if source == "users":
        first = envelopes[0]["data"]
        assert set(first["address"]["geo"]) == {"lat", "lng"}
        assert set(first["company"]) == {"name", "catchPhrase", "bs"}
    else:
        lines = [e["data"]["lines"] for e in envelopes]
        assert [] in lines
        assert None in lines  # null and empty arrays, as relationalize must handle
