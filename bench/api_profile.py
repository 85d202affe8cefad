"""Where the API's time goes under load: py-spy samples the API (memory sink) while wrk posts.

Starts `python -m tributary_api` from `--root` (a checkout; default this one, so an older one
can be profiled the same way), drives it with wrk (bench/api_post.lua) for `--seconds`, records
it with `py-spy record --format raw` (sampled stacks, GIL-holding samples only, `--gil`), and
prints the functions with the most samples on top of the stack (self) and anywhere in it
(total), as percentages of all samples.

Run: `python bench/api_profile.py [--root DIR] [--batch 100] [--seconds 8] [--bare]` (needs py-spy:
`uv tool install py-spy`, and wrk: `make bench-tools`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stack" / "src"))

from tributary_api.auth import hash_key  # noqa: E402
from tributary_stack import samples  # noqa: E402
from tributary_stack.moto import free_port, wait_for_port  # noqa: E402

KEY = "bench-key"
LUA = ROOT / "bench" / "api_post.lua"


def top(stacks: Counter[str], limit: int) -> list[str]:
    """The `limit` functions with the most self and total samples, one line each."""
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for stack, count in stacks.items():
        # "function (file:line)" -> "function (file)": a function's lines add up.
        frames = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") else f for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    lines = [f"{'self %':>7} {'total %':>8}  function (file)"]
    for frame, count in own.most_common(limit):
        lines.append(f"{count / total:7.1%} {anywhere[frame] / total:8.1%}  {frame}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--bare", action="store_true", help="profile bench/bare_app.py (the baseline) instead"
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path.home() / ".local" / "bin" / "py-spy")
    root = args.root.resolve()
    port = free_port()
    env = {
        **os.environ,
        "DATASETS_CONFIG": str(root / "config" / "datasets.yaml"),
        "API_KEYS": json.dumps([{"name": "bench", "sha256": hash_key(KEY)}]),
        "API_SINK": "memory",
        "API_PORT": str(port),
        "API_MAX_IN_FLIGHT": "1000",
        "LOG_LEVEL": "WARNING",
        "METRICS_INTERVAL_S": "3600",
    }
    python = str(root / ".venv" / "bin" / "python")
    argv = (
        [python, str(ROOT / "bench" / "bare_app.py"), str(port)]
        if args.bare
        else [python, "-m", "tributary_api"]
    )
    server = subprocess.Popen(
        argv,
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=120)
        with tempfile.TemporaryDirectory() as tmp:
            body = Path(tmp) / "body.json"
            body.write_bytes(orjson.dumps(samples.posts(args.batch)))
            raw = Path(tmp) / "profile.txt"
            wrk_env = {**os.environ, "WRK_BODY": str(body), "WRK_AUTH": f"Bearer {KEY}"}
            url = f"http://127.0.0.1:{port}/v1/datasets/posts/records"
            wrk = subprocess.Popen(
                [*("wrk", "-t1", "-c8", f"-d{args.seconds + 2}s"), "-s", str(LUA), url],
                env=wrk_env,
                stdout=subprocess.DEVNULL,
            )
            subprocess.run(
                [
                    *(py_spy, "record", "--pid", str(server.pid)),
                    *("--duration", str(args.seconds), "--rate", "250", "--format", "raw", "--gil"),
                    *("--nonblocking", "-o", str(raw)),
                ],
                check=True,
                capture_output=True,
            )
            wrk.wait(timeout=60)
            stacks: Counter[str] = Counter()
            for line in raw.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if stack:
                    stacks[stack] += int(count)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"py-spy, {'bare endpoint' if args.bare else 'API (memory sink)'} at {root}, "
        f"{args.batch}-record posts, "
        f"{sum(stacks.values())} samples"
    )
    print("\n".join(top(stacks, args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
