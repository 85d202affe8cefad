"""The report's tables: scenarios by algorithm, DynamoDB in the steady state, the targets of the
new algorithm, and (with --compare) its rows beside an earlier run's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lease_sim.constants import ALGORITHMS, FAILOVER
from lease_sim.scenario import Scenario
from report import Table, met

SCENARIO_HEADERS = [
    "scenario",
    "algorithm",
    "converged (s)",
    "moves",
    "minimum",
    "moves / min",
    "longest unowned, outside a crash (s)",
    "unowned > failover, outside a crash",
    "crash leases",
    "longest unowned, crash lease (s)",
    "crash leases unowned > 2 failovers",
    "records re-read",
    "lost mid-drain",
    "pickup timeouts",
    "owner changes in the table",
    "leases spread",
    "max load / mean",
]
TARGET_HEADERS = ["target (new algorithm)", "measured", "target", "met"]


@dataclass(frozen=True, slots=True)
class Figures:
    """What the targets and the headline are judged on."""

    rcu: dict[str, float]  # steady-state read units per minute, by algorithm
    wcu: dict[str, float]  # ... write units
    read_ratio: float  # leader / scan read units
    conv_ok: bool
    moves_ok: bool
    gaps_ok: bool
    worst_conv: float  # the leader's slowest convergence (inf: one never converged)
    worst_moves: float
    worst_gap: float
    worst_crash: float


def scenario_rows(runs: dict[str, list[Scenario]]) -> list[list[Any]]:
    """One row per scenario and algorithm, the algorithms of a scenario together."""
    rows = []
    for index in range(len(runs[ALGORITHMS[0]])):
        for algorithm in ALGORITHMS:
            s = runs[algorithm][index]
            rows.append(
                [
                    s.name,
                    algorithm,
                    "never" if s.converged_s is None else f"{s.converged_s:.1f}",
                    s.moves,
                    s.minimum,
                    f"{s.moves / s.minimum:.2f}",
                    f"{s.max_gap_s:.1f}",
                    s.gaps_over_failover,
                    s.crash_leases,
                    f"{s.crash_gap_s:.1f}",
                    s.crash_over_2_failovers,
                    f"{s.reread:,.0f}",
                    s.lost_draining,
                    s.pickup_timeouts,
                    s.owner_changes,
                    s.spread,
                    f"{s.load_ratio:.2f}",
                ]
            )
    return rows


def per_minute(units: dict[str, float], minutes: float) -> float:
    return sum(units.values()) / minutes


def figures(runs: dict[str, list[Scenario]], steady: dict[str, dict[str, Any]]) -> Figures:
    """The steady-state units and the leader's worst scenario figures."""
    rcu = {a: per_minute(steady[a]["rcu"], steady[a]["minutes"]) for a in ALGORITHMS}
    wcu = {a: per_minute(steady[a]["wcu"], steady[a]["minutes"]) for a in ALGORITHMS}
    new = runs["leader"]
    return Figures(
        rcu=rcu,
        wcu=wcu,
        read_ratio=rcu["leader"] / rcu["scan"],
        conv_ok=all(s.converged_s is not None and s.converged_s <= 3 * FAILOVER for s in new),
        moves_ok=all(s.moves <= 1.2 * s.minimum for s in new),
        gaps_ok=all(s.gaps_over_failover == 0 for s in new),
        worst_conv=max((s.converged_s or float("inf")) for s in new),
        worst_moves=max(s.moves / s.minimum for s in new),
        worst_gap=max(s.max_gap_s for s in new),
        worst_crash=max(s.crash_gap_s for s in new),
    )


def cost_rows(steady: dict[str, dict[str, Any]], fig: Figures) -> list[list[Any]]:
    """Requests and units per minute by operation, then the totals, one column per algorithm."""
    cost_rows = []
    ops = sorted({op for a in ALGORITHMS for op in steady[a]["requests"]})
    for op in ops:
        cost_rows.append(
            [op]
            + [
                f"{steady[a]['requests'].get(op, 0) / steady[a]['minutes']:,.0f} req, "
                f"{steady[a]['rcu'].get(op, 0) / steady[a]['minutes']:,.1f} RCU, "
                f"{steady[a]['wcu'].get(op, 0) / steady[a]['minutes']:,.1f} WCU"
                for a in ALGORITHMS
            ]
        )
    cost_rows.append(["total read units / min"] + [f"{fig.rcu[a]:,.1f}" for a in ALGORITHMS])
    cost_rows.append(["total write units / min"] + [f"{fig.wcu[a]:,.1f}" for a in ALGORITHMS])
    return cost_rows


def target_rows(fig: Figures) -> list[list[str]]:
    """The new algorithm's targets: measured, target, met."""
    return [
        [
            "convergence, every scenario (s)",
            f"{fig.worst_conv:.1f}",
            f"<= {3 * FAILOVER:.0f}",
            met(fig.conv_ok),
        ],
        ["moves / minimum, every scenario", f"{fig.worst_moves:.2f}", "<= 1.2", met(fig.moves_ok)],
        [
            "longest unowned outside a crash (s)",
            f"{fig.worst_gap:.1f}",
            f"<= {FAILOVER:.0f}",
            met(fig.gaps_ok),
        ],
        [
            "longest unowned, crash lease (s; waits a failover by design)",
            f"{fig.worst_crash:.1f}",
            "(no target)",
            "",
        ],
        [
            "steady-state reads, leader / scan",
            f"{fig.read_ratio:.3f}",
            "<= 0.1",
            met(fig.read_ratio <= 0.1),
        ],
    ]


def compare_table(new: list[Scenario], earlier: dict[str, Any], label: str) -> Table:
    """The leader's rows of this run beside those of `earlier` (an earlier leases.json)."""
    was = {s["name"]: s for s in earlier["scenarios"]["leader"]}
    compare_headers = [
        "scenario",
        "converged (s): now / was",
        "longest unowned, outside a crash (s): now / was",
        "unowned > failover, outside a crash: now / was",
        "moves: now / was",
        "records re-read: now / was",
    ]

    def pair(now: float | None, then: float | None, fmt: str) -> str:
        def one(v: float | None) -> str:
            return "never" if v is None else format(v, fmt)

        return f"{one(now)} / {one(then)}"

    compare_rows = [
        [
            s.name,
            pair(s.converged_s, was[s.name]["converged_s"], ".1f"),
            pair(s.max_gap_s, was[s.name]["max_gap_s"], ".1f"),
            pair(s.gaps_over_failover, was[s.name]["gaps_over_failover"], "d"),
            pair(s.moves, was[s.name]["moves"], "d"),
            pair(s.reread, was[s.name]["reread"], ",.0f"),
        ]
        for s in new
        if s.name in was
    ]
    return Table(f"leader: this run / {label}", compare_headers, compare_rows)
