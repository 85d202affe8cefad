"""Peak memory of the API under concurrent worst-case bodies, accepted ones held by the sink.

Each round starts the API on the production sink path (`tests/api/held_kinesis_server.py`:
the real app and `KinesisSink`, signed envelopes, default limits: 5 MiB bodies, 500 records,
100,000 JSON values, 64 MiB in flight) whose PutRecords holds every call until all
`--concurrency` requests wait in it, so every accepted request is in memory at once. It records
the RSS once the server serves, sends `--concurrency` identical bodies at once, each with its own
Idempotency-Key, and reads the peak RSS (VmHWM). Rounds are interleaved across scenarios and the
medians reported; the baseline is ONE accepted full body (500 valid ~10 KB posts, 5 MiB): the
ratio column is working memory per request against it.

Run: `python bench/api_memory.py [--rounds 3] [--concurrency 8]`; `bench/api.py` (and so
`python bench/report.py --only api`) runs it too and puts its table in the api report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stack" / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from report import Table  # noqa: E402
from tributary.table import render  # noqa: E402
from tributary_api.auth import hash_key  # noqa: E402
from tributary_stack.moto import free_port  # noqa: E402

KEY = "bench-key"
CAP = 5 * 1024 * 1024
MIB = 1024 * 1024


def _fill(unit: bytes, size: int = CAP) -> bytes:
    """A JSON array of `unit` as close to `size` bytes as fits."""
    return b"[" + b",".join([unit] * ((size - 2) // (len(unit) + 1))) + b"]"


def _posts(size: int = CAP) -> bytes:
    one = len(orjson.dumps({"userId": 1, "id": 1, "title": "", "body": "b"}))
    title = "t" * (size // 500 - one - 8)  # a little under the cap with its commas and ids
    return orjson.dumps(
        [{"userId": 1, "id": i, "title": title, "body": "b"} for i in range(1, 501)]
    )


BASELINE = "one request: 500 valid ~10 KB posts (5 MiB)"
ACCEPTED = "500 valid ~10 KB posts (5 MiB), accepted"
BUDGET = "the same, API_MAX_IN_FLIGHT_BYTES = 3 bodies"
SCENARIOS = {
    BASELINE: _posts(),
    ACCEPTED: _posts(),
    BUDGET: _posts(),
    "[{},{},…] (5 MiB)": _fill(b"{}"),
    "[0,0,…] (5 MiB)": _fill(b"0"),
    '[{"a":{}},…] (5 MiB)': _fill(b'{"a":{}}'),
    "one record, 99,990 {} (0.3 MiB)": b'{"userId":1,"id":1,"title":"t","body":"b","x":['
    + b",".join([b"{}"] * 99_990)
    + b"]}",
}


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def one_round(
    body: bytes, concurrency: int, extra_env: dict[str, str]
) -> tuple[float, float, list[int]]:
    """(peak RSS MiB, working MiB = peak - RSS after start-up, statuses) for one fresh server."""
    port = free_port()
    env = {
        **os.environ,
        **extra_env,
        "API_SINK": "kinesis",
        "STREAM_NAME": "held",
        "LAKE_BUCKET": "unused",
        "ENVELOPE_SIGNING_KEY": "b" * 40,
        "DATASETS_CONFIG": str(ROOT / "config" / "datasets.yaml"),
        "LOG_LEVEL": "WARNING",
        "API_KEYS": json.dumps([{"name": "bench", "sha256": hash_key(KEY)}]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.api.held_kinesis_server",
            *("--port", str(port), "--hold", str(concurrency), "--wait-s", "4"),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        start = _status_kb(proc.pid, "VmRSS")
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

        def send(index: int) -> int:
            keyed = {**headers, "Idempotency-Key": f"bench-{index}"}
            with httpx.Client(timeout=120) as client:
                path = "/v1/datasets/posts/records"
                return client.post(f"{url}{path}", content=body, headers=keyed).status_code

        with ThreadPoolExecutor(concurrency) as pool:
            statuses = sorted(pool.map(send, range(concurrency)))
        peak = _status_kb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return peak / 1024, (peak - start) / 1024, statuses


HEADERS = [
    "body",
    "MiB",
    "status",
    "peak RSS MiB",
    "working MiB",
    "requests",
    "working per request / body cap",
    "per request / baseline",
]
WORST = "[{},{},…] (5 MiB)"
NOTES = [
    "Memory: each scenario runs on a fresh API on the production sink path (the real app and "
    "KinesisSink, signed envelopes, default limits) whose PutRecords holds every call until all "
    "requests of the round wait in it. Peak RSS is the server's VmHWM; working MiB is peak RSS "
    "minus the RSS once it served /healthz (imports excluded). The body cap is API_MAX_BODY_BYTES "
    "(5 MiB by default); a body of tiny records is refused with 413 on its value count before "
    "parsing, after it was read whole (that read is what it costs). The accepted 500-post body "
    "is the larger figure: an accepted request holds its body, the structs decoded from it, the "
    "records' texts (views of the body, or of its compacted copy when it was not compact) and "
    "the envelope lines at once (the table's working / caps column says how much that is).",
]


def measure(rounds: int, concurrency: int) -> tuple[Table, list[list[Any]], list[dict[str, Any]]]:
    """The memory table, its headline rows and the raw figures, from interleaved rounds."""
    peaks: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    working: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    statuses: dict[str, set[int]] = {name: set() for name in SCENARIOS}
    for _ in range(rounds):  # interleaved: every scenario once per round
        for name, body in SCENARIOS.items():
            requests = 1 if name == BASELINE else concurrency
            extra = {"API_MAX_IN_FLIGHT_BYTES": str(3 * CAP)} if name == BUDGET else {}
            peak, work, answered = one_round(body, requests, extra)
            peaks[name].append(peak)
            working[name].append(work)
            statuses[name].update(answered)
    base = statistics.median(working[BASELINE])
    rows: list[list[Any]] = []
    raw: list[dict[str, Any]] = []
    for name, body in SCENARIOS.items():
        work = statistics.median(working[name])
        peak = statistics.median(peaks[name])
        requests = 1 if name == BASELINE else concurrency
        raw.append(
            {
                "body": name,
                "body_bytes": len(body),
                "requests": requests,
                "statuses": sorted(statuses[name]),
                "peak_rss_mib": peak,
                "working_mib": work,
                "body_cap_mib": CAP / MIB,
                "peak_rss_runs": peaks[name],
                "working_runs": working[name],
            }
        )
        rows.append(
            [
                name,
                f"{len(body) / MIB:.2f}",
                "/".join(str(s) for s in sorted(statuses[name])),
                f"{peak:.0f}",
                f"{work:.0f}",
                str(requests),
                f"{work / requests / (CAP / MIB):.1f}",
                f"{work / requests / base:.2f}",
            ]
        )
    title = (
        f"API peak memory, {concurrency} concurrent keyed bodies held in the Kinesis sink, "
        f"median of {rounds} interleaved rounds (fresh server each); body cap "
        f"{CAP / MIB:.0f} MiB"
    )
    headline = []
    for name in (WORST, ACCEPTED):
        figures = next(r for r in raw if r["body"] == name)
        cap_total = concurrency * CAP / MIB
        statuses_text = "/".join(str(s) for s in figures["statuses"])
        headline.append(
            [
                "HTTP API",
                f"peak RSS MiB (working), {concurrency} in-flight {name} → {statuses_text}",
                f"{figures['peak_rss_mib']:.0f} ({figures['working_mib']:.0f})",
                f"body cap × {concurrency} = {cap_total:.0f} MiB",
                f"{figures['working_mib'] / cap_total:.2f} (working / caps)",
                "reported beside the body cap",
                "—",
            ]
        )
    return Table(title, HEADERS, rows), headline, raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    table, _, _ = measure(args.rounds, args.concurrency)
    print(table.title)
    print(render(table.headers, table.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
