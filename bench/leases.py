"""Lease management at scale, simulated: 1,000 shards, 50 workers, KCL 2.x beside KCL 3.x.

Both algorithms run in the same run on the same simulated fleet, driven by a fake clock:
- "scan" (today's, KCL 2.x): every worker Scans the lease table each take cycle (failover/2)
  and at each shard sync (30 s), takes free/expired leases up to ceil(leases/workers) and steals
  one per cycle (the production `plan_takes` and `LeaseObserver`, with a copy of the Worker's
  10-line take loop: the Worker itself runs on wall-clock asyncio timers);
- "leader" (new, KCL 3.x): the production `LeaderCoordinator` (heartbeat in the fleet row,
  leader election, load-based assignment, graceful handoff, owner-index pickup), called as the
  Worker calls it (`take_assigned`), on the same stores.
Both renew every failover/3 and checkpoint every CHECKPOINT_S (each checkpoint is the sim time
in ms, so a new owner's start position says what it re-reads).

The stores are the production in-memory ones (MemoryLeaseStore, MemoryFleetStore) wrapped to
charge every request as DynamoDB on-demand does: item size = attribute names + values (S: UTF-8
bytes, N: ~1 byte per 2 digits + 1, sets and maps their members + 3 bytes); Scan/Query: the
bytes read, in 4 KB units per 1 MB page, halved when eventually consistent (Scan of the lease
table reads the fleet row too; the KEYS_ONLY index holds leaseKey + leaseOwner); GetItem: 4 KB
units; writes (conditional failures included): max(before, after) in 1 KB units, plus the
leaseOwner GSI's (an owner set or removed: one index write, changed: two; renewals and
checkpoints change no projected attribute: none). ReturnValues costs no read units. The same
table (with the index) is charged for both algorithms: today's would not pay the index writes.

Time: an asyncio event loop on simulated time (SimLoop): every worker's loops (take, renew,
checkpoint) run as tasks, every DynamoDB request is an `asyncio.sleep` of its latency (half
before the store applies it, half after), so requests of all workers interleave in true time
order, a worker's requests run concurrently where the Worker's do (renewals and checkpoints
at once, the leader's writes and the shard sync's creates LEASE_CONCURRENCY at once), and the
clock never goes back.

Fidelity: every DynamoDB request takes 2-8 ms (uniform);
the leaseOwner GSI shows each write after up to INDEX_LAG_S (1 s, random per write, in order
per lease) and an eventually consistent Scan (the leader's) returns each lease as it was up to
SCAN_LAG_S (1 s) ago: the production MemoryLeaseStore's `index_lag_s` / `scan_lag_s`.

Scenarios, in sequence on one fleet: cold start of 50 workers on 1,000 unowned leases; steady
state (units measured over 120 s); +10 workers; -10 workers killed (no release); a rolling
deploy of all 50 (SIGTERM one every 5 s, a replacement with a new id started with it).

Unowned: a shard no live worker consumes, from the moment its consumer stopped to the moment
another started. A *crash lease* is one whose consumer stopped because its worker was killed
(its owner when it became unowned was a killed worker): it waits for the failover time by
design. Every other gap counts against "no lease unowned longer than one failover time
outside a crash", including a lease handed over (or assigned) to a worker killed since.

Run: `python bench/leases.py [--shards 1000 --workers 50]`; writes bench/results/leases.json,
the report for BENCHMARKS.md and bench/leases_<scenario>.png.

Code: this script is the command line; the simulator is the package bench/lease_sim/
(constants, clock: the SimLoop; dynamo: item sizes and the meter; store: the metered stores;
fleet, worker: the simulated world and its workers; scenario; table, publish, plot: the output).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from lease_sim.clock import FakeClock, run  # noqa: E402
from lease_sim.constants import ALGORITHMS, DRAIN_S, FAILOVER  # noqa: E402
from lease_sim.fleet import Fleet  # noqa: E402
from lease_sim.plot import plot  # noqa: E402
from lease_sim.publish import save_report, write_json  # noqa: E402
from lease_sim.scenario import Scenario, simulate  # noqa: E402
from lease_sim.table import (  # noqa: E402
    SCENARIO_HEADERS,
    TARGET_HEADERS,
    compare_table,
    cost_rows,
    figures,
    scenario_rows,
    target_rows,
)
from report import Table  # noqa: E402
from tributary.table import render  # noqa: E402

# what tests/stream reach through `import leases`
__all__ = [
    "DRAIN_S",
    "FAILOVER",
    "FakeClock",
    "Fleet",
    "main",
    "run",
    "simulate",
]


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "leases.json")
    parser.add_argument("--plots", type=Path, default=ROOT / "bench")
    parser.add_argument(
        "--compare",
        type=Path,
        help="the leases.json of an earlier run of this simulator (same seeds) whose leader "
        "rows are shown beside this run's",
    )
    parser.add_argument("--compare-label", default="earlier run", help="what --compare ran")
    return parser.parse_args()


def main() -> int:
    """Both algorithms on the same scenarios: print the tables, write the results and plots."""
    args = _args()
    fleets: dict[str, Fleet] = {}
    runs: dict[str, list[Scenario]] = {}
    for algorithm in ALGORITHMS:
        fleet, scenarios = run(simulate(algorithm, args.shards, args.workers))
        fleets[algorithm], runs[algorithm] = fleet, scenarios
    steady = {a: fleets[a].steady for a in ALGORITHMS}
    fig = figures(runs, steady)
    rows, costs, targets = scenario_rows(runs), cost_rows(steady, fig), target_rows(fig)
    print(render(SCENARIO_HEADERS, rows, title=f"{args.shards} shards, {args.workers} workers"))
    print(render(["steady state, per minute", *ALGORITHMS], costs, title="\nDynamoDB"))
    print(render(TARGET_HEADERS, targets, title=""))
    extra_tables: list[Table] = []
    if args.compare is not None:
        earlier = json.loads(args.compare.read_text())
        table = compare_table(runs["leader"], earlier, args.compare_label)
        print(render(table.headers, table.rows, title=f"\n{table.title}"))
        extra_tables.append(table)
    write_json(args.json, args.shards, args.workers, runs, steady, targets)
    paths = plot(fleets, runs, args.plots)
    save_report(args.shards, args.workers, runs, (rows, costs, targets), extra_tables, fig, paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
