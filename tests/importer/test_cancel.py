"""A cancelled pass (what `run --loop` does on SIGTERM) at each point it can land, then a
rerun: the shipped windowed and child sources, over the wire from the fake API, land every
record exactly once. The cancellation is injected through the collaborators: inside the
raw writer's k-th put (before the object is written, or after it is written and before the
put returns: the page's `next_page` not yet advanced) and inside the state store's k-th put
(after the item is written, its answer not yet read), for every k of a clean run. The
subprocess test in test_kill.py proves the same for a real SIGTERM at one point."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.importer.test_import import fake_url, http, landed
from tributary.raw_writer import RawObject, WriteOutcome
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_importer.clients import client_for
from tributary_importer.run import Importer
from tributary_importer.source import DeclaredSource, load_sources
from tributary_importer.state import MemoryStateStore, SourceState

__all__ = ["fake_url", "http"]  # the module-scoped fixtures

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
RECORDS = {"events_windowed": 1200, "post_comments": 480}


async def _cancel_here() -> None:
    """Cancel the running task, as a stop does, and let the cancellation land here."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(0)


class CancellingWriter(MemoryRawWriter):
    """Cancels the pass inside its `at`-th put (from 1): before or after the object lands."""

    def __init__(self) -> None:
        super().__init__()
        self.at: tuple[int, bool] | None = None  # (nth put, after it landed)
        self.count = 0

    async def put(self, obj: RawObject) -> WriteOutcome:
        self.count += 1
        here = self.at is not None and self.at[0] == self.count
        if here and self.at is not None and not self.at[1]:
            await _cancel_here()
        outcome = await super().put(obj)
        if here:
            await _cancel_here()
        return outcome


class CancellingStore(MemoryStateStore):
    """Cancels the pass inside its `at`-th put, after the state is stored."""

    def __init__(self) -> None:
        super().__init__()
        self.at: int | None = None
        self.count = 0

    async def put(self, state: SourceState) -> SourceState:
        self.count += 1
        stored = await super().put(state)
        if self.at == self.count:
            await _cancel_here()
        return stored


def shipped(url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, DeclaredSource]:
    """The shipped sources against this fake, not rate limited (the sweep runs many passes)."""
    monkeypatch.setenv("FAKEAPI_URL", url)
    monkeypatch.setenv("VENDOR_API_KEY", "local-vendor-key")
    declared = load_sources(REPO / "config" / "sources.yaml")
    fast = {"rate_limit_rps": 1000.0}
    return {n: replace(d, spec=d.spec.model_copy(update=fast)) for n, d in declared.items()}


async def cancelled_then_rerun(
    declared: dict[str, DeclaredSource],
    http: httpx.AsyncClient,
    source: str,
    writer: CancellingWriter,
    store: CancellingStore,
) -> Counter[str]:
    """One pass cancelled where the collaborators are set to, then a rerun: the ids landed."""
    first = Importer(writer, store, FakeClock(NOW), MemoryMetrics())
    task = asyncio.create_task(first.run_once(client_for(source, declared, http)))
    with pytest.raises(asyncio.CancelledError):
        await task
    writer.at = store.at = None
    again = Importer(writer, store, FakeClock(NOW), MemoryMetrics())
    result = await again.run_once(client_for(source, declared, http))
    assert result.resumed
    return landed(writer)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("source", list(RECORDS))
async def test_a_pass_cancelled_at_every_put_then_rerun_lands_every_record_once(
    fake_url: str, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    declared = shipped(fake_url, monkeypatch)
    clean_writer, clean_store = CancellingWriter(), CancellingStore()
    await Importer(clean_writer, clean_store, FakeClock(NOW), MemoryMetrics()).run_once(
        client_for(source, declared, http)
    )
    assert sum(landed(clean_writer).values()) == RECORDS[source]
    points: list[tuple[str, int, bool]] = [
        *(
            ("writer", k, after)
            for k in range(1, clean_writer.count + 1)
            for after in (False, True)
        ),
        # the first put records the run; the last one finishes it (nothing then to resume)
        *(("store", k, True) for k in range(1, clean_store.count)),
    ]
    assert len(points) > 20
    for side, k, after in points:
        writer, store = CancellingWriter(), CancellingStore()
        if side == "writer":
            writer.at = (k, after)
        else:
            store.at = k
        ids = await cancelled_then_rerun(declared, http, source, writer, store)
        where = (side, k, after)
        assert sum(ids.values()) == RECORDS[source], where
        assert max(ids.values()) == 1, (where, [i for i, n in ids.items() if n > 1][:5])
