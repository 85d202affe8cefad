"""The lease simulation of bench/leases.py on a small fleet: from an empty lease table, a cold
start converges, and a rolling deploy whose drains take 15 s (renewals going on) loses no
lease mid-drain (the draining worker keeps beating; expiry goes by counter)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import leases  # type: ignore[import-not-found]  # noqa: E402
from tributary_stream.lease import Lease  # noqa: E402


def test_a_small_fleet_converges_and_loses_nothing_while_draining() -> None:
    _, scenarios = leases.run(leases.simulate("leader", 60, 6))
    by_name = {s.name: s for s in scenarios}
    assert leases.DRAIN_S >= leases.FAILOVER  # a drain longer than a failover
    assert by_name["cold start"].converged_s is not None
    assert all(s.lost_draining == 0 for s in scenarios)
    assert by_name["rolling deploy"].converged_s is not None


def test_the_simulated_clock_never_goes_back_and_requests_interleave() -> None:
    """One actor's 100 creates (2-8 ms each, ~0.5 s) and another's Scan at 0.25 s: the Scan
    runs at 0.25 s, between the creates, and sees only those made by then."""

    async def scenario() -> tuple[list[float], list[int]]:
        fleet = leases.Fleet("leader", 0, leases.FakeClock(), {})
        seen: list[float] = []  # the clock, in the order the actors read it
        counts: list[int] = []

        async def writer() -> None:
            for i in range(100):
                await fleet.store.create(Lease(f"shardId-{i:012d}", None, 0, "TRIM_HORIZON"))
                seen.append(fleet.clock.t)

        async def reader() -> None:
            seen.append(fleet.clock.t)
            counts.append(len(await fleet.store.list_leases()))
            seen.append(fleet.clock.t)

        fleet.at(0.0, writer)
        fleet.at(0.25, reader)
        await fleet.run_until(2.0)
        return seen, counts

    seen, counts = leases.run(scenario())
    assert len(seen) == 102
    assert seen == sorted(seen)
    assert 20 < counts[0] < 80  # about half of the creates were made by 0.25 s
