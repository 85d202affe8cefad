"""Peak memory of the API under concurrent worst-case bodies, against ordinary full bodies.

Each round starts the API (uvicorn, `python -m tributary_api`, in-memory sink, default limits:
5 MiB bodies, 500 records, 100,000 JSON values), records its RSS once it serves (imports done),
sends `--concurrency` identical bodies at once, and reads the process's peak RSS (VmHWM). Rounds
are interleaved across scenarios and the medians reported; the baseline is the same number of
ordinary 5 MiB bodies (500 valid ~10 KB posts), what a full request is meant to cost.

Run: `python bench/api_memory.py [--rounds 3] [--concurrency 8]`.
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

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stack" / "src"))

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


BASELINE = "500 valid ~10 KB posts (5 MiB)"
SCENARIOS = {
    BASELINE: _posts(),
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


def one_round(body: bytes, concurrency: int) -> tuple[float, float, list[int]]:
    """(peak RSS MiB, working MiB = peak - RSS after start-up, statuses) for one fresh server."""
    port = free_port()
    env = {
        **os.environ,
        "API_SINK": "memory",
        "API_PORT": str(port),
        "DATASETS_CONFIG": str(ROOT / "config" / "datasets.yaml"),
        "LOG_LEVEL": "WARNING",
        "API_KEYS": json.dumps([{"name": "bench", "sha256": hash_key(KEY)}]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tributary_api"],
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

        def send(_: int) -> int:
            with httpx.Client(timeout=120) as client:
                path = "/v1/datasets/posts/records"
                return client.post(f"{url}{path}", content=body, headers=headers).status_code

        with ThreadPoolExecutor(concurrency) as pool:
            statuses = sorted(pool.map(send, range(concurrency)))
        peak = _status_kb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return peak / 1024, (peak - start) / 1024, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    peaks: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    working: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    statuses: dict[str, set[int]] = {name: set() for name in SCENARIOS}
    for _ in range(args.rounds):  # interleaved: every scenario once per round
        for name, body in SCENARIOS.items():
            peak, work, answered = one_round(body, args.concurrency)
            peaks[name].append(peak)
            working[name].append(work)
            statuses[name].update(answered)
    base = statistics.median(working[BASELINE])
    rows = []
    for name, body in SCENARIOS.items():
        work = statistics.median(working[name])
        rows.append(
            [
                name,
                f"{len(body) / MIB:.2f}",
                "/".join(str(s) for s in sorted(statuses[name])),
                f"{statistics.median(peaks[name]):.0f}",
                f"{work:.0f}",
                f"{work / args.concurrency / (CAP / MIB):.1f}",
                f"{work / base:.2f}",
            ]
        )
    print(
        f"API peak memory, {args.concurrency} concurrent identical bodies, "
        f"median of {args.rounds} interleaved rounds (fresh server each)"
    )
    print(
        render(
            [
                "body",
                "MiB",
                "status",
                "peak RSS MiB",
                "working MiB",
                "working per request / body cap",
                "ratio to baseline",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
