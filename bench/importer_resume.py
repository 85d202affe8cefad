"""Working memory of an importer run that resumes an interrupted attempt, beside a fresh run.

A resumed run reads back every id the interrupted attempt landed and holds them for the rest of
the run (run.py says so); this measures what that costs. For each size, in interleaved rounds,
it imports the fake API's `photos` (5,000 × scale records, pages of 100) to local disk:
- fresh: one run from nothing (the baseline);
- resume: an attempt that crashes after landing every page (before the cursor moves), in a
  process of its own that then exits (its state table handed over in a file, as DynamoDB would
  keep it), then the rerun that resumes it, in a new process — measured.
Per measured process: peak RSS (VmHWM), working memory (peak RSS minus the RSS right after the
imports, the figure REFERENCE.md asks for) and tracemalloc's peak (Python allocations only).
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


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(url: str, lake: Path, mode: str) -> dict[str, float]:
    """`fresh` and `resume` measure a run; `crash` leaves an interrupted one in `lake`."""
    import base64

    import httpx

    from tributary.clock import SystemClock
    from tributary.file_writer import FileRawWriter
    from tributary.testing import MemoryMetrics
    from tributary_importer.fetch import SourceClient
    from tributary_importer.run import Importer
    from tributary_importer.source import SourceSpec
    from tributary_importer.state import MemoryStateStore, SourceState

    after_imports = _status_mb("VmRSS")
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
    saved = lake / "state.json"

    class DiesBeforeCursor(MemoryStateStore):
        """The process dies writing the cursor (the state's second put): the run is left
        interrupted with every page landed."""

        puts = 0

        async def put(self, state: SourceState) -> SourceState:
            self.puts += 1
            if self.puts == 2:
                raise Crash("before the cursor")
            return await super().put(state)

    async def go() -> dict[str, float]:
        writer = FileRawWriter(lake / "lake")
        async with httpx.AsyncClient() as http:
            client = SourceClient("photos", spec, http)
            if mode == "crash":
                dying = DiesBeforeCursor()
                with contextlib.suppress(Crash):
                    await Importer(writer, dying, SystemClock(), MemoryMetrics()).run_once(client)
                blobs = {k: base64.b64encode(v).decode() for k, v in dying.blobs.objects.items()}
                saved.write_text(json.dumps({"items": dying.items, "blobs": blobs}))
                return {}
            store = MemoryStateStore()
            if mode == "resume":
                handed = json.loads(saved.read_text())
                store.items = {k: (v[0], v[1]) for k, v in handed["items"].items()}
                store.blobs.objects.update(
                    {k: base64.b64decode(v) for k, v in handed["blobs"].items()}
                )
            tracemalloc.start()
            result = await Importer(writer, store, SystemClock(), MemoryMetrics()).run_once(client)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        hwm = _status_mb("VmHWM")
        return {
            "skipped": result.skipped,
            "records": result.records,
            "resumed": result.resumed,
            "traced_mb": peak / 1e6,
            "peak_rss_mb": hwm,
            "working_mb": hwm - after_imports,
        }

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
    print(json.dumps(measure(args.url, Path(args.lake), args.mode)))


def _child(mode: str, url: str, lake: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--url", url, "--lake", lake],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scales", default="5,20")
    parser.add_argument("--child", choices=["fresh", "crash", "resume"])
    parser.add_argument("--url")
    parser.add_argument("--lake")
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
                    with tempfile.TemporaryDirectory() as lake:
                        if mode == "resume":
                            _child("crash", url, lake)  # a process of its own, gone before
                        runs[mode].append(_child(mode, url, lake))
        finally:
            process.terminate()
            process.wait()
        assert all(r["resumed"] for r in runs["resume"])
        ids = int(runs["resume"][0]["skipped"])

        for key, label in (
            ("peak_rss_mb", "peak RSS"),
            ("working_mb", "working memory"),
            ("traced_mb", "tracemalloc peak"),
        ):
            fresh = statistics.median(r[key] for r in runs["fresh"])
            resumed = statistics.median(r[key] for r in runs["resume"])
            rows.append(
                [
                    f"{5_000 * scale:,}",
                    f"{ids:,}",
                    label,
                    f"{fresh:.1f}",
                    f"{resumed:.1f}",
                    f"{resumed / fresh:.2f}",
                    f"{(resumed - fresh) * 1e6 / max(ids, 1):.0f}",
                ]
            )
    head = ["records", "ids read back", "measure", "fresh MB", "resume MB", "ratio", "extra B/id"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"(median of {args.rounds} interleaved rounds; each run in its own process; working "
        "memory = peak RSS (VmHWM) minus RSS after imports)"
    )


if __name__ == "__main__":
    main()
