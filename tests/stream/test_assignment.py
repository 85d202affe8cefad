"""The leader's assignment rules (pure): free leases to the least loaded, balance by load
within the threshold (or by count), dampening, stability, maxLeasesForWorker, cooling."""

from __future__ import annotations

from dataclasses import replace

from tributary_stream.assignment import Assignment, BalanceConfig, plan_assignment
from tributary_stream.lease import Checkpoint, Lease


def lease(n: int, owner: str | None = None, bps: float = 0.0) -> Lease:
    return Lease(
        f"shardId-{n:012d}", owner, 1, "100", token="t" if owner else "", throughput_bps=bps
    )


def never(_: Lease) -> bool:
    return False


def apply(leases: list[Lease], plan: Assignment) -> list[Lease]:
    """The table after the plan's takes and completed handoffs."""
    moved = {le.key: to for le, to in plan.assign + plan.handoff}
    return [replace(le, owner=moved.get(le.key, le.owner)) for le in leases]


def loads(leases: list[Lease], workers: list[str]) -> dict[str, float]:
    return {w: sum(le.throughput_bps for le in leases if le.owner == w) for w in workers}


def test_free_leases_fill_the_fleet_evenly_and_respect_max_leases() -> None:
    leases = [lease(i) for i in range(10)]
    plan = plan_assignment(leases, ["a", "b", "c"], never, BalanceConfig(max_leases=3))
    given = [to for _, to in plan.assign]
    assert sorted(given.count(w) for w in "abc") == [3, 3, 3]  # one left unassigned: the cap
    assert plan.handoff == []


def test_a_lease_a_worker_is_cooling_down_goes_elsewhere_or_nowhere() -> None:
    leases = [lease(0)]
    avoid = {"a": frozenset({leases[0].key})}
    assert plan_assignment(leases, ["a"], never, BalanceConfig(), avoid).assign == []
    assert [to for _, to in plan_assignment(leases, ["a", "b"], never, BalanceConfig(), avoid)
            .assign] == ["b"]  # fmt: skip


def test_a_lease_avoided_by_the_only_worker_does_not_hold_back_the_other_free_leases() -> None:
    # L1, the heavier (planned first), is avoided by "a", the only taker: L2 still goes to "a".
    leases = [lease(1, bps=900), lease(2, bps=100)]
    avoid = {"a": frozenset({leases[0].key})}
    plan = plan_assignment(leases, ["a"], never, BalanceConfig(), avoid)
    assert [(le.key, to) for le, to in plan.assign] == [(leases[1].key, "a")]
    capped = plan_assignment([*leases, lease(3, bps=50)], ["a"], never,
                             BalanceConfig(max_leases=1), avoid)  # fmt: skip
    assert [(le.key, to) for le, to in capped.assign] == [(leases[1].key, "a")]


def test_expired_and_orphaned_leases_are_reassigned_finished_ones_never() -> None:
    leases = [lease(0, "dead", 10), lease(1, "a", 10), replace(lease(2), checkpoint="SHARD_END")]
    plan = plan_assignment(leases, ["a", "b"], lambda le: le.owner == "dead", BalanceConfig())
    assert [(le.key, to) for le, to in plan.assign] == [(leases[0].key, "b")]


def test_balancing_by_load_ends_within_the_threshold_and_then_stays_still() -> None:
    """One hot worker: leases move to the cold ones by handoff until every worker is within
    10 % of the mean; planning again on the result moves nothing (no oscillation)."""
    workers = ["a", "b", "c", "d"]
    rates = [500, 400, 300, 200, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10] * 2
    leases = [lease(i, "a", r) for i, r in enumerate(rates)]
    config = BalanceConfig()
    rounds = 0
    while True:
        plan = plan_assignment(leases, workers, never, config)
        if not plan.handoff:
            break
        assert plan.assign == []
        leases = apply(leases, plan)
        rounds += 1
        assert rounds < 10
    by_worker = loads(leases, workers)
    mean = sum(by_worker.values()) / len(workers)
    assert max(by_worker.values()) <= mean * 1.1
    assert rounds >= 2  # dampened: not all in one cycle
    assert plan_assignment(leases, workers, never, config).handoff == []


def test_dampening_moves_at_most_its_share_of_the_excess_per_cycle() -> None:
    leases = [lease(i, "a", 100) for i in range(20)] + [lease(20 + i, "b", 100) for i in range(0)]
    plan = plan_assignment(leases, ["a", "b"], never, BalanceConfig(dampening=0.3))
    # a is 1000 above the mean of 1000: 30 % of that is 300, so 3 leases, not the 10 needed
    assert len(plan.handoff) == 3
    assert {to for _, to in plan.handoff} == {"b"}


def test_a_lease_hotter_than_the_gap_is_not_moved() -> None:
    """Moving a lease heavier than the difference would only swap who is hot."""
    leases = [lease(0, "a", 1000), lease(1, "b", 100)]
    assert plan_assignment(leases, ["a", "b"], never, BalanceConfig()).handoff == []


def test_by_count_moves_the_minimum_to_end_within_one() -> None:
    leases = [lease(i, "a", i + 1.0) for i in range(9)] + [lease(9, "b")]
    plan = plan_assignment(leases, ["a", "b", "c"], never, BalanceConfig(by_load=False))
    after = apply(leases, plan)
    counts = sorted(sum(le.owner == w for le in after) for w in "abc")
    assert counts == [3, 3, 4]
    assert len(plan.handoff) == 5  # a gives 5 (9 → 4): b 1 → 3, c 0 → 3


def test_a_pending_handoff_counts_at_its_target() -> None:
    leases = [replace(lease(i, "a", 100), handoff_to="b" if i < 5 else None) for i in range(10)]
    assert plan_assignment(leases, ["a", "b"], never, BalanceConfig()).handoff == []


def test_children_are_not_assigned_before_their_parents_finish() -> None:
    parent = lease(0, "a", 100)
    child = replace(lease(1), checkpoint=Checkpoint.TRIM_HORIZON, parents=frozenset({parent.key}))
    plan = plan_assignment([parent, child], ["a", "b"], never, BalanceConfig())
    assert plan.assign == []
    done = replace(parent, checkpoint=Checkpoint.SHARD_END)
    plan = plan_assignment([done, child], ["a", "b"], never, BalanceConfig())
    assert [le.key for le, _ in plan.assign] == [child.key]
