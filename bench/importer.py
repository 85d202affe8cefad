"""Benchmark the importer beside dlt's REST API source (PyPI `dlt[filesystem]`), same run.

Both import the fake API's `photos` (FAKEAPI_SCALE=20: 100,000 records) in 1,000 pages of 100,
following json-server's Link header, to local disk (ours: gzip NDJSON envelopes through
FileRawWriter; dlt: its filesystem destination, jsonl). Each runs in its own process, from its
own virtualenv holding only what that tool installs in production (`uv sync --package
tributary-importer --no-dev` for ours, `dlt[filesystem]` at the locked version for dlt), so
neither pays for the other's or the dev tools' imports. It reports wall time, records/s, CPU
seconds, peak RSS, and working memory = peak RSS − RSS right after its imports.
Run: `make bench` or `python bench/importer.py [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS, PAGE = 100_000, 100


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    return _status_mb("VmRSS")


def cpu_s() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb() -> float:
    """This process's peak RSS: VmHWM, not getrusage's ru_maxrss, which after exec can still
    hold the RSS of the parent that spawned us."""
    return _status_mb("VmHWM")


def run_ours(url: str, out: Path, paging: str = "link_header") -> dict[str, float]:
    import httpx

    from tributary.file_writer import FileRawWriter
    from tributary.testing import MemoryMetrics
    from tributary_importer.fetch import SourceClient
    from tributary_importer.run import Importer
    from tributary_importer.source import SourceSpec
    from tributary_importer.state import MemoryStateStore

    after_imports = rss_mb()
    pagination: dict[str, object] = {
        "kind": "link_header",
        "size_param": "_limit",
        "page_size": PAGE,
    }
    params = {"_page": "1"}
    if paging == "page_number":
        pagination = {
            "kind": "page_number",
            "page_param": "_page",
            "size_param": "_limit",
            "page_size": PAGE,
        }
        params = {}
    spec = SourceSpec.model_validate(
        {
            "base_url": url,
            "path": "/photos",
            "dataset": "photos",
            "rate_limit_rps": 100_000,
            "params": params,
            "pagination": pagination,
            "concurrency": 4,
        }
    )

    async def go() -> int:
        async with httpx.AsyncClient() as http:
            importer = Importer(
                FileRawWriter(out),
                MemoryStateStore(),
                __import__("tributary.clock").clock.SystemClock(),
                MemoryMetrics(),
            )
            result = await importer.run_once(SourceClient("photos", spec, http))
            return result.records

    started, cpu = time.perf_counter(), cpu_s()
    records = asyncio.run(go())
    return {
        "records": records,
        "seconds": time.perf_counter() - started,
        "cpu_s": cpu_s() - cpu,
        "after_imports_mb": after_imports,
        "peak_mb": peak_mb(),
    }


def run_dlt(url: str, out: Path) -> dict[str, float]:
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt
    from dlt.sources.rest_api import rest_api_source

    after_imports = rss_mb()
    source = rest_api_source(
        {
            "client": {"base_url": url, "paginator": {"type": "header_link"}},
            "resources": [
                {
                    "name": "photos",
                    "endpoint": {"path": "photos", "params": {"_page": 1, "_limit": PAGE}},
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        dataset_name="bench",
        destination=dlt.destinations.filesystem(bucket_url=str(out / "lake")),
        pipelines_dir=str(out / "pipelines"),
    )
    started, cpu = time.perf_counter(), cpu_s()
    info = pipeline.run(source, loader_file_format="jsonl")
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu
    records = sum(
        v
        for k, v in (pipeline.last_trace.last_normalize_info.row_counts.items())
        if not k.startswith("_dlt")
    )
    del info
    return {
        "records": records,
        "seconds": seconds,
        "cpu_s": cpu,
        "after_imports_mb": after_imports,
        "peak_mb": peak_mb(),
    }


def tool_venvs() -> dict[str, str]:
    """A minimal virtualenv per tool (made once, under .bench/); tool -> its python."""
    from importlib.metadata import version

    # uv as the Makefile installs it: `python3 -m uv` of the interpreter the venv came from
    found = shutil.which("uv")
    uv = [found] if found else [getattr(sys, "_base_executable", sys.executable), "-m", "uv"]
    base = ROOT / ".bench" / "importer"
    ours, dlt = base / "ours", base / "dlt"

    def run(*args: str, **env: str) -> None:
        subprocess.run(
            [*uv, *args], check=True, cwd=ROOT, capture_output=True, env={**os.environ, **env}
        )

    run(
        "sync",
        "--frozen",
        "--package",
        "tributary-importer",
        "--no-dev",
        "--python",
        sys.executable,
        UV_PROJECT_ENVIRONMENT=str(ours),
    )
    if not (dlt / "bin" / "python").exists():
        run("venv", "--python", sys.executable, str(dlt))
    run(
        "pip",
        "install",
        "--python",
        str(dlt / "bin" / "python"),
        f"dlt[filesystem]=={version('dlt')}",
    )
    python = {"dlt": str(dlt / "bin" / "python"), "ours": str(ours / "bin" / "python")}
    return {**python, "ours_pages": python["ours"]}


def child(tool: str, url: str, python: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [python, __file__, "--child", tool, "--url", url, "--out", tmp],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "importer.json")
    args = parser.parse_args()
    if args.child:
        if args.child == "dlt":
            result = run_dlt(args.url, args.out)
        else:
            paging = "page_number" if args.child == "ours_pages" else "link_header"
            result = run_ours(args.url, args.out, paging)
        print(json.dumps(result))
        return

    from report import Report, Table, met, save
    from tributary.table import render
    from tributary_stack.moto import free_port
    from tributary_stack.process import ManagedProcess

    pythons = tool_venvs()
    port = free_port()
    env = {**os.environ, "FAKEAPI_PORT": str(port), "FAKEAPI_SCALE": "20"}
    with open(os.devnull, "w") as sink:
        api = ManagedProcess.python_module("fakeapi", "tributary_fakeapi", [], env, sink).start()
        url = f"http://127.0.0.1:{port}"
        api.wait_http(f"{url}/__admin/stats", timeout=120)
        runs: dict[str, list[dict[str, float]]] = {"dlt": [], "ours": [], "ours_pages": []}
        try:
            for _ in range(args.rounds):  # interleaved
                for tool in runs:
                    runs[tool].append(child(tool, url, pythons[tool]))
        finally:
            api.stop(timeout=10)

    def med(tool: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[tool])

    out = {}
    for tool in runs:
        base = med(tool, "after_imports_mb")
        out[tool] = {
            "records": runs[tool][0]["records"],
            "seconds": med(tool, "seconds"),
            "cpu_s": med(tool, "cpu_s"),
            "peak_mb": med(tool, "peak_mb"),
            "after_imports_mb": base,
            "working_mb": med(tool, "peak_mb") - base,
        }
    labels = {
        "dlt": "dlt rest_api → filesystem (Link header)",
        "ours": "tributary importer (Link header)",
        "ours_pages": "tributary importer (page number, 4 in flight)",
    }
    dlt_rate = out["dlt"]["records"] / out["dlt"]["seconds"]
    dlt_cpu_rate = out["dlt"]["records"] / out["dlt"]["cpu_s"]
    rows = []
    for tool, label in labels.items():
        r = out[tool]
        rate, cpu_rate = r["records"] / r["seconds"], r["records"] / r["cpu_s"]
        base = tool == "dlt"
        rows.append(
            [
                label,
                f"{r['records']:,.0f}",
                f"{r['seconds']:.1f}",
                f"{rate:,.0f}",
                "1.00 (baseline)" if base else f"{rate / dlt_rate:.2f}",
                f"{cpu_rate:,.0f}",
                "1.00 (baseline)" if base else f"{cpu_rate / dlt_cpu_rate:.2f}",
                f"{r['peak_mb']:.0f}",
                "1.00 (baseline)" if base else f"{r['peak_mb'] / out['dlt']['peak_mb']:.2f}",
                f"{r['working_mb']:.0f}",
                "1.00 (baseline)"
                if base
                else f"{r['working_mb'] / max(out['dlt']['working_mb'], 1e-9):.2f}",
            ]
        )
    title = (
        f"\nImporting {RECORDS:,} records in {RECORDS // PAGE:,} pages (median of "
        f"{args.rounds}); {platform.machine()} x{os.cpu_count()}, "
        f"Python {platform.python_version()}"
    )
    headers = [
        "importer",
        "records",
        "seconds",
        "records/s",
        "× dlt",
        "records/CPU-s",
        "× dlt",
        "peak RSS MB",
        "× dlt",
        "working MB",
        "× dlt",
    ]
    print(render(headers, rows, title=title))
    ours, dlt = out["ours"], out["dlt"]
    speed = (ours["records"] / ours["seconds"]) / dlt_rate
    peak = ours["peak_mb"] / dlt["peak_mb"]
    save(
        Report(
            name="importer",
            setup=(
                f"{RECORDS:,} photos from the fake API (FAKEAPI_SCALE=20) in {RECORDS // PAGE:,} "
                f"pages of {PAGE}, to local disk, beside dlt's REST API source (filesystem "
                "destination, jsonl) following the same Link header. Each tool runs in its own "
                "process from its own minimal virtualenv (only what it installs in production); "
                f"median of {args.rounds} interleaved runs. Peak RSS is the process's VmHWM; "
                "working memory = peak RSS − RSS right after its imports."
            ),
            tables=[Table(title.strip(), headers, rows)],
            headline=[
                [
                    "importer",
                    "records/s, 100k records in 1,000 pages (Link header)",
                    f"{ours['records'] / ours['seconds']:,.0f}",
                    f"{dlt_rate:,.0f} (dlt rest_api)",
                    f"{speed:.2f}",
                    "≥ 2×",
                    met(speed >= 2),
                ],
                [
                    "importer",
                    "peak RSS MB (same import)",
                    f"{ours['peak_mb']:.0f}",
                    f"{dlt['peak_mb']:.0f} (dlt rest_api)",
                    f"{peak:.2f}",
                    "≤ 0.5×",
                    met(peak <= 0.5),
                ],
            ],
            notes=[
                "Where our time goes, per page: httpx (the required client) ≈ 1.6 ms of CPU, "
                "creating the page's file ≈ 1 ms in this VM (one object per page, metadata in an "
                "xattr), gzip ≈ 0.35 ms, 100 envelopes ≈ 0.6 ms; the fake API's server side "
                "≈ 0.6 ms per page.",
            ],
        )
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
