"""What a run leaves behind: leases.json (every scenario's figures and the steady state) and
the report BENCHMARKS.md is assembled from (bench/results/leases.report.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lease_sim.constants import (
    ALGORITHMS,
    FAILOVER,
    INDEX_LAG_S,
    LATENCY_S,
    LEASE_CONCURRENCY,
    SCAN_LAG_S,
)
from lease_sim.scenario import Scenario
from lease_sim.table import SCENARIO_HEADERS, TARGET_HEADERS, Figures
from report import Report, Table, met, save


def write_json(
    path: Path,
    shards: int,
    workers: int,
    runs: dict[str, list[Scenario]],
    steady: dict[str, dict[str, Any]],
    targets: list[list[str]],
) -> None:
    """Every scenario's figures, the steady state and the targets, for --compare and readers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "shards": shards,
                "workers": workers,
                "failover_s": FAILOVER,
                "scenarios": {a: [vars(s) for s in runs[a]] for a in ALGORITHMS},
                "steady_state": steady,
                "targets": targets,
            },
            indent=2,
            default=str,
        )
    )


def save_report(
    shards: int,
    workers: int,
    runs: dict[str, list[Scenario]],
    tables: tuple[list[list[Any]], list[list[Any]], list[list[str]]],
    extra_tables: list[Table],
    fig: Figures,
    plots: list[Path],
) -> None:
    """The report: the setup, the (scenario, cost, target) `tables` and `extra_tables`, the two
    headline rows and the notes on what each column means."""
    rows, cost_rows, targets = tables
    links = ", ".join(f"[{p.name}](bench/{p.name})" for p in plots)
    save(
        Report(
            name="leases",
            setup=(
                f"{shards} shards, {workers} workers, failover {FAILOVER:.0f} s, "
                "simulated with a fake clock on the production in-memory lease and fleet stores, "
                "each request charged as DynamoDB on-demand charges it (see bench/leases.py). "
                "'scan' is today's KCL 2.x algorithm (every worker scans each cycle, steals one "
                "lease per cycle), 'leader' the KCL 3.x one (LEASE_ASSIGNMENT=leader: a leader "
                "assigns by load, workers read their leases from the leaseOwner GSI, graceful "
                "handoff). Shard rates are skewed (lognormal). "
                f"Leases per worker over time: {links}."
            ),
            tables=[
                Table("Scenarios (each window 180 s after the event)", SCENARIO_HEADERS, rows),
                Table("DynamoDB in the steady state", ["", *ALGORITHMS], cost_rows),
                Table("Targets", TARGET_HEADERS, targets),
                *extra_tables,
            ],
            headline=[
                [
                    "leases",
                    "steady-state lease-table read units/min (1,000 shards)",
                    f"{fig.rcu['leader']:,.0f}",
                    f"{fig.rcu['scan']:,.0f} (KCL 2.x scans)",
                    f"{fig.read_ratio:.3f}",
                    "<= 0.1",
                    met(fig.read_ratio <= 0.1),
                ],
                [
                    "leases",
                    "worst convergence after +10/-10/deploy (s)",
                    f"{fig.worst_conv:.1f}",
                    f"{max((s.converged_s or float('inf')) for s in runs['scan']):.1f}",
                    "",
                    f"<= {3 * FAILOVER:.0f}",
                    met(fig.conv_ok),
                ],
            ],
            notes=[
                "pickup timeouts = leases the leader gave another worker because the one it had "
                "given them to did not take them within the pickup timeout (failover / 2); owner "
                "changes = writes that gave a lease to another worker (takes, forces, handoff "
                "releases), whether or not a consumer started on it.",
                "moves = times a shard's consumer changed worker in the window; minimum = the "
                "leases of leaving workers plus what the rest must shed or gain to end within "
                "[floor, ceil] of leases per worker (rolling deploy: every lease once).",
                "records re-read = records a new owner read again from the last checkpoint, "
                "plus what two consumers read at once while a robbed owner had not noticed.",
                "unowned = no live worker consuming the shard, from its consumer's stop to "
                "the next start. A crash lease is one whose consumer stopped because its "
                "worker was killed (its owner when it became unowned was a killed worker): it "
                "waits for the failover time by design and is reported apart; every other gap "
                "counts for 'outside a crash', a lease handed or assigned to a worker killed "
                "since included.",
                "Simulated time: an asyncio loop whose clock jumps to the next timer when every "
                "task waits; every worker's loops are tasks and every request a switch point, so "
                "actions interleave in time order and the clock never goes back (the simulator "
                "of earlier runs, up to e79097d, ran each action to its end on a clock it then "
                "set back for the next event, and before that without request latency: its "
                "figures are not comparable with these).",
                f"Requests take {LATENCY_S[0] * 1000:.0f}-{LATENCY_S[1] * 1000:.0f} ms each, "
                "the leader's writes and the shard sync's creates "
                f"{LEASE_CONCURRENCY} at once (LEASE_CONCURRENCY); the leaseOwner GSI lags each "
                "write by up to "
                f"{INDEX_LAG_S:.0f} s and the leader's eventually consistent Scan returns rows "
                f"up to {SCAN_LAG_S:.0f} s old (MemoryLeaseStore index_lag_s / scan_lag_s).",
            ],
        )
    )
