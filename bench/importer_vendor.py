"""The importer against a realistic vendor: every answer 50 ms away, a rate limit to respect.

The fake API runs with FAKEAPI_LATENCY_MS (tributary_fakeapi.vendor) and counts the requests it
sees. Ours pages `photos` by page number with pages in flight (SourceSpec.concurrency; the URLs
of page-number and offset paging are known in advance, so they are fetched ahead, bounded, and
landed in order: an interrupted run resumes from the pages it landed), paced by the source's
`rate_limit_rps`. dlt's REST API source pages the same resource the way it can, one page after
the other (Link header). Each runs in its own process from its own minimal virtualenv (see
bench/importer.py), timed inside it after its imports. Ours keeps its state in its production
store, DynamoDB (+ S3 state blobs) on moto; both write the records to local disk (ours: gzip
NDJSON envelopes, dlt: its filesystem destination, its state in its local pipelines dir).

Used by bench/importer.py (its "realistic vendor" table and headline row).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LATENCY_MS = 50
RATE_LIMIT_RPS = 100.0  # the source's configured limit
# A limit that binds: 8 pages in flight at 50 ms could go 160/s; the fake API enforces it too
# (Faults.rate_limit_rps: 429 beyond it), so a client going faster would pay for it.
BOUND_RPS = 40.0
CONCURRENCY = 8  # pages in flight
SCALE = 4  # photos: 5,000 × SCALE records
PAGE = 100


def run_ours(url: str, out: Path, name: str, rps: float = RATE_LIMIT_RPS) -> dict[str, float]:
    """Child: one full import with pages in flight at limit `rps`, state in DynamoDB (moto)."""
    import httpx

    from tributary.aws import AwsClients
    from tributary.clock import SystemClock
    from tributary.file_writer import FileRawWriter
    from tributary.settings import AwsSettings
    from tributary.testing import MemoryMetrics
    from tributary_importer.fetch import SourceClient
    from tributary_importer.run import Importer
    from tributary_importer.source import SourceSpec
    from tributary_importer.state_blob import S3StateBlobs
    from tributary_importer.state_dynamodb import DynamoDbStateStore

    spec = SourceSpec.model_validate(
        {
            "base_url": url,
            "path": "/photos",
            "dataset": "photos",
            "rate_limit_rps": rps,
            "concurrency": CONCURRENCY,
            "pagination": {
                "kind": "page_number",
                "page_param": "_page",
                "size_param": "_limit",
                "page_size": PAGE,
            },
        }
    )
    settings = AwsSettings()

    async def go() -> tuple[int, int, float, int]:
        async with AwsClients(settings) as clients, httpx.AsyncClient() as http:
            store = DynamoDbStateStore(
                await clients.dynamodb(),
                settings.state_table,
                S3StateBlobs(await clients.s3(), settings.lake_bucket),
            )
            importer = Importer(FileRawWriter(out), store, SystemClock(), MemoryMetrics())
            client = SourceClient(name, spec, http)
            started = time.perf_counter()
            result = await importer.run_once(client)
            return result.records, result.pages, time.perf_counter() - started, client.retries

    records, pages, seconds, retries = asyncio.run(go())
    return {"records": records, "pages": pages, "seconds": seconds, "retries": retries}


def run_dlt(url: str, out: Path, name: str) -> dict[str, float]:
    """Child: dlt's REST API source, sequential Link-header paging, to the filesystem."""
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt
    from dlt.sources.rest_api import rest_api_source

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
        pipeline_name=name,
        dataset_name="bench",
        destination=dlt.destinations.filesystem(bucket_url=str(out / "lake")),
        pipelines_dir=str(out / "pipelines"),
    )
    started = time.perf_counter()
    pipeline.run(source, loader_file_format="jsonl")
    seconds = time.perf_counter() - started
    counts = pipeline.last_trace.last_normalize_info.row_counts
    records = sum(v for k, v in counts.items() if not k.startswith("_dlt"))
    return {"records": records, "pages": -1, "seconds": seconds, "retries": 0}


def child_main(tool: str, url: str, out: Path, name: str) -> None:
    if tool == "dlt":
        result = run_dlt(url, out, name)
    else:
        result = run_ours(url, out, name, BOUND_RPS if tool == "ours_bound" else RATE_LIMIT_RPS)
    print(json.dumps(result))


def _child(tool: str, python: str, url: str, env: dict[str, str], n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [python, __file__, tool, url, tmp, f"photos_{tool}_{n}"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
        )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(pythons: dict[str, str], rounds: int) -> dict[str, Any]:
    """Start moto and the slow fake API, run both tools `rounds` times interleaved; medians,
    with the peak request rate the API saw during each tool's runs."""
    import httpx

    from tributary.bootstrap import bootstrap
    from tributary.settings import AwsSettings
    from tributary_stack.moto import MotoProcess, free_port
    from tributary_stack.process import ManagedProcess
    from tributary_stack.stack import LOCAL_CREDENTIALS

    port = free_port()
    api_env = {
        **os.environ,
        "FAKEAPI_PORT": str(port),
        "FAKEAPI_SCALE": str(SCALE),
        "FAKEAPI_LATENCY_MS": str(LATENCY_MS),
    }
    url = f"http://127.0.0.1:{port}"
    runs: dict[str, list[dict[str, Any]]] = {"dlt": [], "ours": [], "ours_bound": []}
    with MotoProcess() as moto, open(os.devnull, "w") as sink:
        env = {
            **os.environ,
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL": moto.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LAKE_BUCKET": "vendor-lake",
            "STATE_TABLE": "vendor-state",
            "STREAM_NAME": "vendor-stream",
            "LEASE_TABLE": "vendor-leases",
        }
        os.environ.update(LOCAL_CREDENTIALS)
        aws = AwsSettings.model_validate({k: v for k, v in env.items() if k.isupper()})
        asyncio.run(bootstrap(aws, shards=1))
        api = ManagedProcess.python_module("fakeapi", "tributary_fakeapi", [], api_env, sink)
        api.start()
        try:
            api.wait_http(f"{url}/__admin/stats", timeout=120)
            with httpx.Client(base_url=url) as admin:
                for n in range(rounds):
                    for tool in runs:
                        # the fake API enforces the bound limit itself in that run (429s)
                        limit = BOUND_RPS if tool == "ours_bound" else 0.0
                        admin.put("/__admin/faults", json={"rate_limit_rps": limit})
                        admin.delete("/__admin/rate")
                        before = admin.get("/__admin/stats").json()["injected"].get("429", 0)
                        result = _child(tool, pythons[tool], url, env, n)
                        result.update(admin.get("/__admin/rate").json())
                        after = admin.get("/__admin/stats").json()["injected"].get("429", 0)
                        result["answered_429"] = after - before
                        runs[tool].append(result)
                admin.put("/__admin/faults", json={"rate_limit_rps": 0.0})
        finally:
            api.stop(timeout=10)
    out: dict[str, Any] = {}
    for tool, results in runs.items():
        out[tool] = {
            "records": results[0]["records"],
            "seconds": statistics.median(r["seconds"] for r in results),
            "requests": statistics.median(r["requests"] for r in results),
            "requests_max": max(r["requests"] for r in results),
            # while paging: first to last request the fake API saw (no set-up, no state writes)
            "req_per_s": statistics.median(
                (r["requests"] - 1) / max(r["span_s"], 1e-9) for r in results
            ),
            "req_per_s_run": statistics.median(r["requests"] / r["seconds"] for r in results),
            "answered_429": sum(r["answered_429"] for r in results),
            "retries": sum(r["retries"] for r in results),
            "max_per_second": max(r["max_per_second"] for r in results),
            "max_per_calendar_second": max(r["max_per_calendar_second"] for r in results),
            "runs": results,
        }
    return out


def table_rows(out: dict[str, Any]) -> tuple[list[str], list[list[object]], float]:
    """Headers, rows and our speed-up over dlt (at the 100 req/s limit)."""
    dlt_rate = out["dlt"]["records"] / out["dlt"]["seconds"]
    labels = {
        "dlt": ("dlt rest_api, sequential (Link header)", None),
        "ours": (f"tributary importer, page number, {CONCURRENCY} in flight", RATE_LIMIT_RPS),
        "ours_bound": (
            f"tributary importer, {CONCURRENCY} in flight, limit that binds "
            f"(fake API enforces {BOUND_RPS:g}/s too)",
            BOUND_RPS,
        ),
    }
    rows: list[list[object]] = []
    for tool, (label, limit) in labels.items():
        r = out[tool]
        rate = r["records"] / r["seconds"]
        rows.append(
            [
                label,
                f"{r['records']:,}",
                f"{r['seconds']:.1f}",
                f"{rate:,.0f}",
                "1.00 (baseline)" if tool == "dlt" else f"{rate / dlt_rate:.2f}",
                f"{r['requests']:,.0f} (max {int(r['requests_max']):,})",
                f"{r['req_per_s']:.1f} ({r['req_per_s_run']:.1f})",
                f"{int(r['max_per_second'])} ({int(r['max_per_calendar_second'])})",
                f"{limit:g}" if limit else "— (none)",
                f"{int(r['answered_429'])} / {int(r['retries'])}",
            ]
        )
    headers = [
        "importer",
        "records",
        "seconds",
        "records/s",
        "× dlt",
        "requests (median, max of runs)",
        "avg req/s first→last request (whole run)",
        "max req/s seen (calendar s)",
        "rate limit",
        "429s / retries (all runs)",
    ]
    speed = (out["ours"]["records"] / out["ours"]["seconds"]) / dlt_rate
    return headers, rows, speed


if __name__ == "__main__":
    import sys

    tool, url, out_dir, name = sys.argv[1:5]
    child_main(tool, url, Path(out_dir), name)
