"""Benchmark the ingestion API against a bare FastAPI endpoint, in the same run.

Targets, all under the same uvicorn settings (1 worker, no access log, same loop and parser):
  bare          bench/bare_app.py: parse the body with orjson, answer 202 (the baseline)
  api/memory    the API with API_SINK=memory: auth, validation, envelopes (service overhead)
  api/kinesis   the API on moto Kinesis: PutRecords before the 202 (end to end, local)

The load generator is a separate process (bench/loadgen.py), closed loop, keep-alive, on
loopback. Run: `make bench` or `python bench/api.py [--seconds 5] [--connections 8]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stack" / "src"))

from tributary.aws import AwsClients  # noqa: E402
from tributary.settings import AwsSettings  # noqa: E402
from tributary_api.auth import hash_key  # noqa: E402
from tributary_stack import samples  # noqa: E402
from tributary_stack.bootstrap import bootstrap  # noqa: E402
from tributary_stack.moto import MotoServer, free_port, wait_for_port  # noqa: E402
from tributary_stack.stack import LOCAL_CREDENTIALS  # noqa: E402
from tributary_stack.table import render  # noqa: E402

KEY = "bench-key"
PATH = "/v1/datasets/posts/records"


def serve(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_port("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"server on {port} did not answer")


def load(port: int, body_file: Path, connections: int, seconds: float) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "loadgen.py"),
            PATH,
            str(port),
            str(body_file),
            str(connections),
            str(seconds),
            json.dumps({"Authorization": f"Bearer {KEY}"}),
        ],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, object] = orjson.loads(out.stdout)
    return result


def stream_count(settings: AwsSettings) -> int:
    """Records put on the stream, from the shards' sequence of GetRecords (for a sanity check)."""
    import asyncio

    async def count() -> int:
        total = 0
        async with AwsClients(settings) as clients:
            kinesis = await clients.kinesis()
            shards = (await kinesis.list_shards(StreamName=settings.stream_name))["Shards"]
            for shard in shards:
                it: str | None = (
                    await kinesis.get_shard_iterator(
                        StreamName=settings.stream_name,
                        ShardId=shard["ShardId"],
                        ShardIteratorType="TRIM_HORIZON",
                    )
                )["ShardIterator"]
                while it:
                    page = await kinesis.get_records(ShardIterator=it, Limit=10_000)
                    total += len(page["Records"])
                    if not page["Records"]:
                        break
                    it = page.get("NextShardIterator")
        return total

    return asyncio.run(count())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batches", default="1,100,500")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "api.json")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    os.environ.update(LOCAL_CREDENTIALS)
    moto = MotoServer().start()
    aws = AwsSettings.model_validate(
        {
            "AWS_ENDPOINT_URL": moto.endpoint,
            "STREAM_NAME": "bench-stream",
            "LAKE_BUCKET": "bench-lake",
        }
    )
    import asyncio

    asyncio.run(bootstrap(aws, shards=4))
    base_env = {
        **os.environ,
        "DATASETS_CONFIG": str(ROOT / "config" / "datasets.yaml"),
        "API_KEYS": json.dumps([{"name": "bench", "sha256": hash_key(KEY)}]),
        "LOG_LEVEL": "WARNING",
        "METRICS_INTERVAL_S": "3600",
        "API_MAX_IN_FLIGHT": "1000",
        "AWS_ENDPOINT_URL": moto.endpoint,
        "STREAM_NAME": aws.stream_name,
        "LAKE_BUCKET": aws.lake_bucket,
        "PYTHONPATH": str(ROOT / "bench"),
    }
    uvicorn_flags = ["--workers", "1", "--no-access-log", "--log-level", "warning"]
    targets = {
        "bare": lambda port: [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            *uvicorn_flags,
        ],
        "api/memory": lambda port: [sys.executable, "-m", "tributary_api"],
        "api/kinesis": lambda port: [sys.executable, "-m", "tributary_api"],
    }
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch in batches:
            body_file = Path(tmp) / f"body-{batch}.json"
            body = orjson.dumps(samples.posts(batch))
            body_file.write_bytes(body)
            bare_rps = 0.0
            for name, argv in targets.items():
                port = free_port()
                env = {
                    **base_env,
                    "API_PORT": str(port),
                    "API_SINK": "kinesis" if name == "api/kinesis" else "memory",
                }
                proc = serve(argv(port), env, port)
                try:
                    before = stream_count(aws) if name == "api/kinesis" else 0
                    result = load(port, body_file, args.connections, args.seconds)
                    landed = stream_count(aws) - before if name == "api/kinesis" else None
                finally:
                    proc.terminate()
                    proc.wait(30)
                requests = int(result["requests"])  # type: ignore[call-overload]
                statuses: dict[str, int] = result["statuses"]  # type: ignore[assignment]
                ok = statuses.get("202", 0)
                rps = requests / args.seconds
                if name == "bare":
                    bare_rps = rps
                ratio = rps / bare_rps if bare_rps else 0.0
                record = {
                    "target": name,
                    "batch": batch,
                    "body_bytes": len(body),
                    "requests_per_s": rps,
                    "records_per_s": rps * batch,
                    "p50_ms": result["p50_ms"],
                    "p99_ms": result["p99_ms"],
                    "ratio_vs_bare": ratio,
                    "non_202": requests - ok,
                    "landed": landed,
                }
                results.append(record)
                rows.append(
                    [
                        name,
                        batch,
                        f"{rps:,.0f}",
                        f"{rps * batch:,.0f}",
                        f"{result['p50_ms']:.1f}",
                        f"{result['p99_ms']:.1f}",
                        "1.00 (baseline)" if name == "bare" else f"{ratio:.2f}",
                        requests - ok,
                    ]
                )
    moto.stop()
    print(
        render(
            ["target", "batch", "req/s", "records/s", "p50 ms", "p99 ms", "vs bare", "non-202"],
            rows,
            title=f"\nAPI benchmark: {args.connections} connections, {args.seconds:g}s per "
            f"cell, ~{len(orjson.dumps(samples.posts(1)[0]))} B records, 1 uvicorn "
            f"worker; {platform.machine()} x{os.cpu_count()}, "
            f"Python {platform.python_version()}",
        )
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
