"""Boundary dedupe is by instant, not by spelling: a vendor that spells one instant several ways
(Z, +00:00, another offset, with or without a fraction) across runs lands each (pk, instant)
exactly once, whatever crashes in between. Faults are injected through the collaborators (the
raw writer and the state store), as a crashed process would leave them."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.importer.faults import Crash, CrashingStore, CrashingWriter
from tributary.batch import decode_ndjson_gz
from tributary.testing import FakeClock, MemoryMetrics
from tributary_importer.cursor import canonical, parse_instant
from tributary_importer.fetch import SourceClient
from tributary_importer.run import Importer
from tributary_importer.source import SourceSpec

BASE = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 3


def spell(at: datetime, style: int, offset_min: int) -> str:
    """One of the ways a vendor writes the instant `at`."""
    local = at.astimezone(timezone(timedelta(minutes=offset_min)))
    match style:
        case 0:
            return at.strftime("%Y-%m-%dT%H:%M:%SZ")
        case 1:
            return at.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        case 2:
            return local.isoformat()  # +HH:MM (or +00:00)
        case 3:
            return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        case 4:
            return local.isoformat(timespec="microseconds")
        case _:
            return at.strftime("%Y-%m-%dT%H:%M:%S")  # no offset: UTC


def vendor(rows: dict[str, tuple[datetime, str]]) -> httpx.MockTransport:
    """`?since=` (inclusive, any ISO spelling) and `?page=`/`?limit=` over `rows`."""

    def handle(request: httpx.Request) -> httpx.Response:
        found = parse_instant(request.url.params["since"])
        assert found is not None
        since = found[0]
        ordered = sorted((at, pk, text) for pk, (at, text) in rows.items() if at >= since)
        page, limit = int(request.url.params["page"]), int(request.url.params["limit"])
        chosen = ordered[(page - 1) * limit : page * limit]
        return httpx.Response(200, json=[{"id": pk, "updated_at": t} for _, pk, t in chosen])

    return httpx.MockTransport(handle)


run_plan = st.fixed_dictionaries(
    {
        # records that change before this run, each by how many seconds after the latest
        "moves": st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 6), max_size=4),
        "style": st.integers(0, 5),
        "offset_min": st.sampled_from([0, 60, -300, 330, 840]),
        "crash": st.one_of(
            st.none(),
            st.tuples(st.sampled_from(["writer", "store"]), st.integers(1, 4), st.booleans()),
        ),
    }
)


async def scenario(lag_s: int, plans: list[dict[str, Any]]) -> None:
    rows: dict[str, tuple[datetime, str]] = {}
    writer, store = CrashingWriter(), CrashingStore()
    spec = SourceSpec.model_validate(
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
                "page_size": PAGE,
            },
            "incremental": {
                "field": "updated_at",
                "param": "since",
                "initial": "2025-12-31T00:00:00Z",
                "lag_s": lag_s,
            },
        }
    )
    current: dict[str, datetime] = {}
    importer = Importer(writer, store, FakeClock(BASE + timedelta(days=1)), MemoryMetrics())
    # Every run's plan, then two clean runs: the last one must find nothing new.
    plans = [
        *plans,
        {"moves": {}, "style": 0, "offset_min": 0, "crash": None},
        {"moves": {}, "style": 2, "offset_min": 60, "crash": None},
    ]
    async with httpx.AsyncClient(transport=vendor(rows)) as http:
        client = SourceClient("items", spec, http)
        for step, plan in enumerate(plans):
            for pk, seconds in plan["moves"].items():
                # a record changes: a new version stamped by the vendor's clock, which never
                # goes back (0 s: the same instant as the latest record, the cursor's boundary)
                latest = max(current.values(), default=BASE)
                current[pk] = latest + timedelta(seconds=seconds)
            for pk, at in current.items():
                # the same instants, spelled this run's way (one spelling per record and run)
                style = (plan["style"] + ord(pk)) % 6
                rows[pk] = (at, spell(at, style, plan["offset_min"]))
            writer.count = store.count = 0
            writer.at = store.at = None
            if plan["crash"] is not None:
                target, nth, after = plan["crash"]
                (writer if target == "writer" else store).at = (nth, after)
            try:
                result = await importer.run_once(client)
            except Crash:
                continue
            if step == len(plans) - 1:
                assert result.records == 0, "a clean rerun found something new"
    landed = Counter[tuple[str, datetime]]()
    for obj in writer.objects.values():
        for line in decode_ndjson_gz(obj.body):
            data = orjson.loads(line)["data"]
            found = parse_instant(data["updated_at"])
            assert found is not None
            landed[(data["id"], found[0])] += 1
    twice = [k for k, n in landed.items() if n > 1]
    assert not twice, f"landed more than once: {twice}"
    assert set(current.items()) <= set(landed)
    assert (await store.get("items")).run is None


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(lag_s=st.sampled_from([0, 2, 3600]), plans=st.lists(run_plan, min_size=1, max_size=5))
def test_each_pk_and_instant_lands_once_whatever_the_spelling_offset_or_crash(
    lag_s: int, plans: list[dict[str, Any]]
) -> None:
    asyncio.run(scenario(lag_s, plans))


def test_a_record_reserved_as_plus_zero_instead_of_z_is_not_landed_again() -> None:
    """The reviewer's probe: the same instant, spelled Z then +00:00, lands once."""
    asyncio.run(
        scenario(
            0,
            [
                {"moves": {"a": 0}, "style": 0 - ord("a"), "offset_min": 0, "crash": None},
                {"moves": {}, "style": 1 - ord("a"), "offset_min": 0, "crash": None},
            ],
        )
    )


def test_canonical_spelling_of_cursor_values() -> None:
    same = ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000+00:00", "2026-01-01T01:00:00+01:00"]
    assert {canonical(v) for v in same} == {"2026-01-01T00:00:00Z"}
    assert canonical("2026-01-01T00:00:00.1234567Z") == "2026-01-01T00:00:00.1234567Z"
    assert canonical("2026-01-01T00:00:00.250-05:00") == "2026-01-01T05:00:00.25Z"
    assert canonical("1.50") == canonical("1.5") == "1.5"
    assert canonical("1e2") == "100"
    assert canonical("9007199254740993") == "9007199254740993"
    assert canonical("abc") == "abc"
