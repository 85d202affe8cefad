"""Lease-taking decisions with a fake clock: expiry, balancing, stealing, parents first."""

from __future__ import annotations

from tributary.testing import FakeClock
from tributary_stream.coordinator import LeaseObserver, plan_takes
from tributary_stream.lease import Checkpoint, Lease


def lease(
    key: str,
    owner: str | None,
    counter: int = 1,
    checkpoint: str = "TRIM_HORIZON",
    parents: frozenset[str] = frozenset(),
) -> Lease:
    return Lease(key, owner, counter, checkpoint, parents=parents)


def keys(leases: list[Lease]) -> list[str]:
    return [x.key for x in leases]


def test_free_leases_are_taken_up_to_the_fair_share() -> None:
    clock, observer = FakeClock(), LeaseObserver(10)
    table = [lease(f"s{i}", None) for i in range(4)] + [lease("s4", "other")]
    observer.observe(table, clock.monotonic())
    plan = plan_takes("me", table, observer, clock.monotonic())
    assert keys(plan.take) == ["s0", "s1", "s2"]  # 5 leases, 2 live workers: share 3
    assert not plan.steal


def test_lease_expires_only_after_counter_is_unchanged_for_failover() -> None:
    clock, observer = FakeClock(), LeaseObserver(10)
    table = [lease("s0", "w1", counter=5), lease("s1", "me")]
    observer.observe(table, clock.monotonic())
    clock.advance(9)
    assert plan_takes("me", table, observer, clock.monotonic()).take == []
    clock.advance(1)  # 10 s without a renewal: w1 is gone, its lease is free
    assert keys(plan_takes("me", table, observer, clock.monotonic()).take) == ["s0"]


def test_renewed_lease_does_not_expire() -> None:
    clock, observer = FakeClock(), LeaseObserver(10)
    observer.observe([lease("s0", "w1", 5)], clock.monotonic())
    for counter in range(6, 12):
        clock.advance(4)
        observer.observe([lease("s0", "w1", counter)], clock.monotonic())
    assert not observer.expired(lease("s0", "w1", 11), clock.monotonic())


def test_first_sight_is_not_expiry() -> None:
    clock, observer = FakeClock(), LeaseObserver(10)
    clock.advance(1000)
    observer.observe([lease("s0", "w1")], clock.monotonic())
    assert not observer.expired(lease("s0", "w1"), clock.monotonic())


def test_balancing_steals_one_per_cycle_from_the_busiest() -> None:
    clock, observer = FakeClock(), LeaseObserver(10)
    table = [lease(f"s{i}", "w1") for i in range(4)] + [lease("s4", "w2")]
    observer.observe(table, clock.monotonic())
    plan = plan_takes("me", table, observer, clock.monotonic())
    assert plan.steal
    assert keys(plan.take) == ["s0"]  # share is 2: w1 (4) loses one lease per cycle
    balanced = [lease(f"s{i}", "w1") for i in range(2)] + [
        lease("s2", "w2"),
        lease("s3", "w2"),
        lease("s4", "me"),
    ]
    assert plan_takes("me", balanced, observer, clock.monotonic()).take == []


def test_nothing_is_stolen_while_something_is_free_or_expired() -> None:
    clock, observer = FakeClock(), LeaseObserver(10)
    table = [lease(f"s{i}", "w1") for i in range(4)] + [lease("s4", None)]
    observer.observe(table, clock.monotonic())
    plan = plan_takes("me", table, observer, clock.monotonic())
    assert (keys(plan.take), plan.steal) == (["s4"], False)


def test_children_wait_for_every_parent() -> None:
    clock, observer = FakeClock(), LeaseObserver(10)
    merged = frozenset({"p1", "p2"})
    table = [
        lease("p1", None, checkpoint=Checkpoint.SHARD_END),
        lease("p2", "w1"),
        lease("c", None, parents=merged),
    ]
    observer.observe(table, clock.monotonic())
    assert "c" not in keys(plan_takes("me", table, observer, clock.monotonic()).take)
    table[1] = lease("p2", "w1", checkpoint=Checkpoint.SHARD_END)
    assert keys(plan_takes("me", table, observer, clock.monotonic()).take) == ["c"]


def test_finished_leases_are_never_taken() -> None:
    clock, observer = FakeClock(), LeaseObserver(10)
    table = [lease("s0", None, checkpoint=Checkpoint.SHARD_END)]
    observer.observe(table, clock.monotonic())
    assert plan_takes("me", table, observer, clock.monotonic()).take == []
