"""CPU cost of landing pages: this tree's importer against another checkout's (a baseline, e.g.
the main branch before the page loop was shared by the flat and segmented runners).

Each measured process imports PAGES pages of SIZE records from memory (no HTTP: the page loop
body alone, which is what moved) into a memory raw writer, once for a flat incremental source
and once for a windowed one (an `end_param`, one window: the segmented runner), and prints the
CPU seconds of each run (process time: less swayed than wall time by other processes on a
shared machine). The order is alternated ABBA: rounds alternate which tree runs first, and
within a process which runner runs first, so drift and warm-up fall on both sides alike. The
table gives each side's median with its min–max, and the candidate / baseline ratio of the
medians; the report is saved in bench/results/importer_landing.report.json (not part of
`make bench`: it needs a baseline checkout).
Run: `python bench/importer_landing.py --baseline /work/main [--rounds 6]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from report import Report, Table, save  # noqa: E402

PAGES, SIZE = 200, 500

CHILD = r"""
import asyncio, json, time
from datetime import UTC, datetime, timedelta
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_importer.fetch import Page
from tributary_importer.run import Importer
from tributary_importer.source import SourceSpec
from tributary_importer.state import MemoryStateStore

PAGES, SIZE = {pages}, {size}
START = datetime(2025, 1, 1, tzinfo=UTC)
ROWS = [
    [{{"id": p * SIZE + i, "title": "t" * 40, "n": i,
       "updated_at": (START + timedelta(seconds=p * SIZE + i)).isoformat().replace("+00:00", "Z")}}
     for i in range(SIZE)]
    for p in range(PAGES)
]

class Client:
    def __init__(self, spec):
        self.name, self.spec, self.parent, self.retries = "bench", spec, None, 0
    async def pages(self, lower, upper=None, path=None):
        for n, rows in enumerate(ROWS, 1):
            yield Page(n, rows, 1)

async def one(extra):
    spec = SourceSpec.model_validate({{
        "base_url": "http://127.0.0.1:9", "path": "/x", "dataset": "posts",
        "incremental": {{"field": "updated_at", "param": "since",
                         "initial": "2025-01-01T00:00:00Z", **extra}},
    }})
    run = Importer(MemoryRawWriter(), MemoryStateStore(),
                   FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), MemoryMetrics())
    started = time.process_time()
    result = await run.run_once(Client(spec))
    assert result.records == PAGES * SIZE, result
    return time.process_time() - started

KINDS = {{"flat": {{}}, "windowed": {{"end_param": "until"}}}}
out = {{kind: asyncio.run(one(KINDS[kind])) for kind in {order!r}}}
print(json.dumps(out))
"""


def measure(tree: Path, order: tuple[str, ...]) -> dict[str, float]:
    """One process importing from `tree`'s sources, the runners in `order`."""
    paths = [tree / "shared" / "src", tree / "services" / "importer" / "src"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    code = CHILD.format(pages=PAGES, size=SIZE, order=order)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def main() -> None:
    """ABBA-interleaved rounds; medians, spreads and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    started = time.monotonic()
    trees = {"baseline": args.baseline, "candidate": ROOT}
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "candidate": []}
    for n in range(args.rounds):
        sides = ("baseline", "candidate") if n % 4 in (0, 3) else ("candidate", "baseline")
        order = ("flat", "windowed") if n % 2 == 0 else ("windowed", "flat")
        for side in sides:
            runs[side].append(measure(trees[side], order))
    title = f"{PAGES} pages × {SIZE} records, {args.rounds} ABBA rounds, medians (min–max)"
    headers = ["runner", "baseline CPU s", "candidate CPU s", "candidate / baseline"]
    rows: list[list[object]] = []
    for kind in ("flat", "windowed"):
        base = [r[kind] for r in runs["baseline"]]
        cand = [r[kind] for r in runs["candidate"]]
        ratio = statistics.median(cand) / statistics.median(base)
        rows.append([kind, _spread(base), _spread(cand), f"{ratio:.3f}"])
    print(title)
    print("| " + " | ".join(headers) + " |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    took = time.monotonic() - started
    print(f"{took:.0f} s, load average {os.getloadavg()[0]:.1f}")
    setup = f"baseline {args.baseline}, candidate {ROOT}; {took:.0f} s"
    save(Report("importer_landing", setup, [Table(title, headers, rows)], []))


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


if __name__ == "__main__":
    main()
