"""The fake API's vendor timing: the latency knob (FAKEAPI_LATENCY_MS) and the request rate it
reports, over the wire; the rate's peak computed exactly on known arrival times."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fake_vendor_api
from tributary_fakeapi.vendor import RequestRate


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    logs: Path = tmp_path_factory.mktemp("fakeapi-vendor")
    with (
        fake_vendor_api(logs, env={"FAKEAPI_LATENCY_MS": "120"}) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        yield client


def test_latency_from_the_environment_delays_every_vendor_answer(api: httpx.Client) -> None:
    assert api.delete("/__admin/rate").status_code == 200
    assert api.get("/__admin/rate").json()["latency_ms"] == 120
    started = time.monotonic()
    assert api.get("/posts", params={"_page": 1, "_limit": 5}).status_code == 200
    assert time.monotonic() - started >= 0.12  # a floor the knob sets, not a performance bound
    api.get("/__admin/stats")
    assert api.get("/__admin/rate").json()["requests"] == 1  # admin routes are not counted


def test_knob_set_over_the_wire_and_requests_counted(api: httpx.Client) -> None:
    assert api.put("/__admin/vendor", json={"latency_ms": 0}).json() == {"latency_ms": 0}
    api.delete("/__admin/rate")
    for page in range(1, 8):
        api.get("/posts", params={"_page": page, "_limit": 5})
    api.get("/no-such-resource")  # a 404 is a request the vendor saw too
    rate = api.get("/__admin/rate").json()
    assert rate["requests"] == 8
    assert rate["max_per_second"] >= 2  # eight back-to-back requests, no latency: not all apart
    assert api.put("/__admin/vendor", json={"latency_ms": -1}).status_code == 422
    api.put("/__admin/vendor", json={"latency_ms": 120})


def test_peak_rate_is_the_most_arrivals_in_any_half_open_second() -> None:
    arrivals = (0.0, 0.5, 0.99, 1.0, 1.2, 1.3, 1.98, 3.0)
    rate, narrow = RequestRate(), RequestRate(window_s=0.01)
    for at in arrivals:
        rate.seen(100 + at)
        narrow.seen(100 + at)
    # [0.99, 1.99) holds 0.99, 1.0, 1.2, 1.3, 1.98; 0.0 and 1.0 are a second apart: not both.
    assert rate.max_in_window() == 5
    assert narrow.max_in_window() == 1
    assert rate.requests == 8
    assert (rate.first, rate.last) == (100.0, 103.0)
    assert RequestRate().max_in_window() == 0
    assert RequestRate().max_per_calendar_second() == 0


def test_calendar_seconds_count_by_the_wall_clock_second() -> None:
    rate = RequestRate(started=1_000.0)  # monotonic 0.0 is wall-clock 1000.0
    for at in (0.9, 1.1, 1.2, 2.5, 3.0, 3.1, 3.4, 3.99):
        rate.seen(at)
    # seconds 1000: .9; 1001: 1.1, 1.2; 1002: 2.5; 1003: 3.0, 3.1, 3.4, 3.99
    assert rate.max_per_calendar_second() == 4
    assert rate.max_in_window() == 4  # [3.0, 4.0); [0.9, 1.9) holds only 3


def reference_peak(arrivals: list[float], window_s: float) -> int:
    """The most arrivals in any [t, t + window_s), from the whole sorted list."""
    best = start = 0
    for end, at in enumerate(arrivals):
        while arrivals[start] <= at - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_a_long_run_keeps_bounded_memory_and_the_same_peaks() -> None:
    """10^5 arrivals at a jittered ~300/s: only the last second's arrivals are kept, and the
    peaks equal those computed from every arrival."""
    rng = random.Random(8)
    at, arrivals = 0.0, []
    rate = RequestRate(started=0.0)
    most_kept = 0
    for _ in range(100_000):
        at += rng.expovariate(300)
        arrivals.append(at)
        rate.seen(at)
        most_kept = max(most_kept, len(rate._recent))
    assert rate.requests == 100_000
    assert most_kept == rate.max_in_window() < 1_000
    assert rate.max_in_window() == reference_peak(arrivals, 1.0)
    calendar = max(Counter(int(a) for a in arrivals).values())
    assert rate.max_per_calendar_second() == calendar
