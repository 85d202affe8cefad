"""The demo's richer-vendors check: exact counts, as the fake API serves each source."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import REPO, fake_vendor_api
from tributary.batch import decode_ndjson_gz
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_fakeapi.variants import events as fake_events
from tributary_importer.clients import client_for
from tributary_importer.run import Importer
from tributary_importer.source import SourceSpec, load_sources
from tributary_importer.state import MemoryStateStore
from tributary_stack.demo_vendors import RICHER_VENDORS, richer_vendors, served_by_fake

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SOURCES = REPO / "config" / "sources.yaml"
SERVED = {  # the fake at scale 1
    "posts_jsonlink": 100,
    "comments_hcursor": 500,
    "posts_oauth": 100,
    "items_graphql": 50,
    "events_windowed": 1200,
    "post_comments": 480,
    "posts_archive": 0,
}


@pytest.fixture(scope="module")
def fake_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fake_vendor_api(tmp_path_factory.mktemp("fakeapi")) as url:
        yield url


def checks(rows: list[list[object]]) -> dict[str, object]:
    return {str(row[0]): row[-1] for row in rows}


def shipped(path: Path = SOURCES) -> dict[str, SourceSpec]:
    env = {"FAKEAPI_URL": "http://fake", "VENDOR_OAUTH_SECRET": "s", "VENDOR_API_KEY": "k"}
    return {name: source.spec for name, source in load_sources(path, env).items()}


INCREMENTAL = {name: spec.incremental is not None for name, spec in shipped().items()}


def test_an_under_import_is_a_mismatch_on_a_fresh_stack_and_on_a_rerun() -> None:
    assert {k for k in RICHER_VENDORS if INCREMENTAL[k]} == {"items_graphql", "events_windowed"}
    full = dict(SERVED)

    def check(imported: dict[str, int], lines: dict[str, int], ids: dict[str, int]) -> Any:
        return checks(richer_vendors(SERVED, imported, lines, ids, INCREMENTAL))

    assert set(check(full, full, full).values()) == {"ok"}
    short = {**SERVED, "items_graphql": 20}  # one relay page of 50 items only
    fresh = check(short, short, short)
    assert fresh["items_graphql"] == "MISMATCH"
    assert {v for k, v in fresh.items() if k != "items_graphql"} == {"ok"}
    # a rerun importing nothing new over a raw zone that holds only 20: still short
    rerun = check({**SERVED, "items_graphql": 0}, {"items_graphql": 20}, short)
    assert rerun["items_graphql"] == "MISMATCH"
    # a rerun over a complete raw zone: incremental 0 new, full refresh all again
    again = {**SERVED, "items_graphql": 0, "events_windowed": 0}
    lines = {k: v + again[k] for k, v in SERVED.items()}
    rows = check(again, lines, SERVED)
    assert rows.pop("posts_archive") == "ok"  # empty: nothing in raw, ever
    assert set(rows.values()) == {"ok (rerun)"}
    # a full-refresh rerun that lands half the posts, or 1 of 480 child comments: raw holds
    # every id from the first run, but this run under-imported
    for source, got in (("posts_jsonlink", 50), ("post_comments", 1)):
        under = {**again, source: got}
        more = {**lines, source: SERVED[source] + got}
        assert check(under, more, SERVED)[source] == "MISMATCH", source
    # an incremental rerun that landed its records again (raw lines past its ids)
    twice = {**again, "events_windowed": 1200}
    relanded = {**lines, "events_windowed": 2400}
    assert check(twice, relanded, SERVED)["events_windowed"] == "MISMATCH"
    # more distinct ids than the fake serves (a duplicate under another id) is a mismatch too
    over = {**SERVED, "post_comments": 481}
    assert check(over, over, over)["post_comments"] == "MISMATCH"
    assert check({}, {}, {})["posts_archive"] == "MISMATCH"  # not run


def moved(tmp_path: Path) -> Path:
    """The shipped sources with other `initial`s and `step`: 20 of the 50 items, the events
    from July in 7-day windows."""
    text = SOURCES.read_text()
    edits = {
        'initial: "2026-01-01T00:00:00Z"}\n  events_windowed': (
            'initial: "2026-01-01T00:00:31Z"}\n  events_windowed'
        ),
        'initial: "2025-01-01T00:00:00Z", step: 30d}': 'initial: "2025-07-01T00:00:00Z", step: 7d}',
    }
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("which", ["shipped", "moved"])
def test_the_fake_serves_what_the_shipped_sources_import_over_the_wire(
    fake_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, which: str
) -> None:
    """`served_by_fake` asks the fake's plain routes as the sources file declares them; the
    sources, run over the wire twice on one raw zone and state, land exactly that many
    distinct ids each, and the check says ok, then ok (rerun). With other `initial`s and
    `step` in the file, served and imported still agree."""
    path = SOURCES if which == "shipped" else moved(tmp_path)
    monkeypatch.setenv("FAKEAPI_URL", fake_url)
    monkeypatch.setenv("VENDOR_OAUTH_SECRET", "fake-oauth-secret")
    monkeypatch.setenv("VENDOR_API_KEY", "local-vendor-key")  # the parent posts; not checked
    declared = load_sources(path)
    specs = {name: source.spec for name, source in declared.items()}
    served = served_by_fake(fake_url, NOW, specs)
    if which == "shipped":
        assert served == SERVED
    else:
        july = datetime(2025, 7, 1, tzinfo=UTC)
        events = sum(datetime.fromisoformat(e["occurred_at"]) >= july for e in fake_events(1))
        assert (served["items_graphql"], served["events_windowed"]) == (20, events)
    incremental = {name: spec.incremental is not None for name, spec in specs.items()}
    writers = {name: MemoryRawWriter() for name in RICHER_VENDORS}
    stores = {name: MemoryStateStore() for name in RICHER_VENDORS}

    async def run_all() -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        imported: dict[str, int] = {}
        lines: dict[str, int] = defaultdict(int)
        ids: dict[str, set[str]] = defaultdict(set)
        async with httpx.AsyncClient() as http:
            for name in RICHER_VENDORS:
                run = Importer(writers[name], stores[name], FakeClock(NOW), MemoryMetrics())
                imported[name] = (await run.run_once(client_for(name, declared, http))).records
                for obj in writers[name].objects.values():
                    for line in decode_ndjson_gz(obj.body):
                        lines[name] += 1
                        ids[name].add(orjson.loads(line)["id"])
        return imported, dict(lines), {k: len(v) for k, v in ids.items()}

    first = checks(richer_vendors(served, *asyncio.run(run_all()), incremental))
    assert set(first.values()) == {"ok"}
    rerun = checks(richer_vendors(served, *asyncio.run(run_all()), incremental))
    assert rerun.pop("posts_archive") == "ok"
    assert set(rerun.values()) == {"ok (rerun)"}
