"""Working memory of an importer run that resumes an interrupted attempt, beside a fresh run.

A resumed run reads back every id the interrupted attempt landed and holds them for the rest of
the run (run.py says so); this measures what that costs. For each size, in interleaved rounds,
it imports the fake API's `photos` (5,000 × scale records, pages of 100) to local disk:
- fresh: one run from nothing (the baseline);
- resume: an attempt that crashes after landing every page (before the cursor moves), then the
  rerun that resumes it — measured.
Memory is tracemalloc's peak during the measured run (Python allocations only). Each size runs
in its own process, so one measurement never inherits another's heap.
Run: `python bench/importer_resume.py [--rounds 2] [--scales 5,20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Crash(Exception):
    """The interrupted attempt's end."""


def measure(url: str, lake: Path, resume: bool) -> dict[str, float]:
    import httpx

    from tributary.clock import SystemClock
    from tributary.file_writer import FileRawWriter
    from tributary.testing import MemoryMetrics
    from tributary_importer.fetch import SourceClient
    from tributary_importer.run import Importer
    from tributary_importer.source import SourceSpec
    from tributary_importer.state import MemoryStateStore

    spec = SourceSpec.model_validate(
        {
            "base_url": url,
            "path": "/photos",
            "dataset": "photos",
            "rate_limit_rps": 100_000,
            "pagination": {
                "kind": "page_number",
                "page_param": "_page",
                "size_param": "_limit",
                "page_size": 100,
            },
        }
    )

    async def crash(step: str) -> None:
        if step == "before_cursor":
            raise Crash(step)

    async def go() -> dict[str, float]:
        store, writer = MemoryStateStore(), FileRawWriter(lake)
        async with httpx.AsyncClient() as http:
            client = SourceClient("photos", spec, http)
            if resume:
                crashing = Importer(writer, store, SystemClock(), MemoryMetrics(), crash)
                with contextlib.suppress(Crash):
                    await crashing.run_once(client)
            tracemalloc.start()
            result = await Importer(writer, store, SystemClock(), MemoryMetrics()).run_once(client)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        return {"skipped": result.skipped, "records": result.records, "peak": peak}

    return asyncio.run(go())


def fake_api(scale: int) -> tuple[subprocess.Popen[bytes], str]:
    from tributary_stack.moto import free_port

    port = free_port()
    env = {**os.environ, "FAKEAPI_PORT": str(port), "FAKEAPI_SCALE": str(scale)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tributary_fakeapi"], env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    _wait(url)
    return process, url


def _wait(url: str) -> None:
    import time

    import httpx

    for _ in range(300):
        try:
            httpx.get(f"{url}/__admin/stats", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.url, Path(tmp), args.mode == "resume")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scales", default="5,20")
    parser.add_argument("--child", choices=["fresh", "resume"])
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        child(args)
        return
    rows: list[list[Any]] = []
    for scale in (int(s) for s in args.scales.split(",")):
        process, url = fake_api(scale)
        try:
            runs: dict[str, list[dict[str, float]]] = {"fresh": [], "resume": []}
            for _ in range(args.rounds):
                for mode in ("fresh", "resume"):  # interleaved
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", mode, "--url", url],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    runs[mode].append(json.loads(out))
        finally:
            process.terminate()
            process.wait()
        fresh = statistics.median(r["peak"] for r in runs["fresh"])
        resumed = statistics.median(r["peak"] for r in runs["resume"])
        ids = int(runs["resume"][0]["skipped"])
        rows.append(
            [
                f"{5_000 * scale:,}",
                f"{ids:,}",
                f"{fresh / 1e6:.1f}",
                f"{resumed / 1e6:.1f}",
                f"{resumed / fresh:.2f}",
                f"{(resumed - fresh) / max(ids, 1):.0f}",
            ]
        )
    head = ["records", "ids read back", "fresh MB", "resume MB", "ratio", "extra B/id"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"(tracemalloc peak of the measured run, median of {args.rounds} interleaved rounds)")


if __name__ == "__main__":
    main()
