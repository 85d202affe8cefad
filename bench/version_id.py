"""What `version_field` costs the API's per-record loop: the `<id>@<version>` envelope id
(`Dataset.envelope_id`, the version spelled one way) against the plain producer id
(`Dataset.record_id`, the baseline, same run) and against encoding the envelope itself.

Also the API's whole per-record step with and without it (validate + id + encode), and the
f-string `tributary.version` spells an instant with against `strftime` (why it is not used).

Run: `.venv/bin/python bench/version_id.py [--records 20000] [--rounds 7]`. Prints medians of
interleaved rounds (µs per record) and each figure's ratio to the baseline; saves them in
bench/results/version_id.report.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tributary.dataset import DatasetRegistry
from tributary.table import render

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from report import Report, Table, save  # noqa: E402

AT = datetime(2026, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)


def records(n: int, spelling: str) -> list[dict[str, Any]]:
    suffix = {"Z": "Z", "offset": "+02:00", "millis": ".250Z"}[spelling]
    return [
        {
            "id": i,
            "name": f"item {i}",
            "price": 1.5,
            "updated_at": f"2026-03-01T10:{i % 60:02d}:00{suffix}",
        }
        for i in range(n)
    ]


def per_record_us(fn: Callable[[Any], Any], batch: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for record in batch:
        fn(record)
    return (time.perf_counter() - started) / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    items = DatasetRegistry.from_file(ROOT / "config" / "datasets.yaml")["items"]
    batches = {s: records(args.records, s) for s in ("Z", "offset", "millis")}

    def envelope(record: dict[str, Any]) -> bytes:
        return orjson.dumps({"v": 1, "dataset": "items", "id": "7", "data": record})

    def plain_step(record: dict[str, Any]) -> bytes:
        items.validator.errors(record)
        items.record_id(record)
        return envelope(record)

    def versioned_step(record: dict[str, Any]) -> bytes:
        items.validator.errors(record)
        items.envelope_id(record)
        return envelope(record)

    def strftime(_: dict[str, Any]) -> str:
        return AT.strftime("%Y-%m-%dT%H:%M:%S")

    def fstring(_: dict[str, Any]) -> str:
        date = f"{AT.year:04d}-{AT.month:02d}-{AT.day:02d}"
        return f"{date}T{AT.hour:02d}:{AT.minute:02d}:{AT.second:02d}"

    cases: dict[str, tuple[Callable[[Any], Any], str]] = {
        "record_id (baseline: no version)": (items.record_id, "Z"),
        "envelope_id, version …Z": (items.envelope_id, "Z"),
        "envelope_id, version +02:00": (items.envelope_id, "offset"),
        "envelope_id, version .250Z": (items.envelope_id, "millis"),
        "orjson.dumps of the envelope": (envelope, "Z"),
        "API step: validate + record_id + dumps": (plain_step, "offset"),
        "API step: validate + envelope_id + dumps": (versioned_step, "offset"),
        "strftime of an instant (not used)": (strftime, "Z"),
        "f-string of an instant (used)": (fstring, "Z"),
    }
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):  # interleaved: every case once per round
        for name, (fn, spelling) in cases.items():
            runs[name].append(per_record_us(fn, batches[spelling]))
    base = statistics.median(runs["record_id (baseline: no version)"])
    rows = []
    for name, values in runs.items():
        median = statistics.median(values)
        rows.append([name, f"{median:.3f}", f"{median / base:.2f}×"])
    title = f"{args.records:,} records × {args.rounds} interleaved rounds"
    headers = ["per record", "µs (median)", "vs baseline"]
    print(render(headers, rows, title=title))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    step = [r for r in rows if r[0].startswith("API step")]
    ratio = float(step[1][1]) / float(step[0][1])
    print(f"load average (1 min) at the end: {load}; API step with/without version: {ratio:.2f}×")
    save(
        Report(
            "version_id",
            f"{title}; load average {load} on the shared machine",
            [Table(title, headers, rows)],
            [],
            [f"API step (validate + id + encode) with version_field: {ratio:.2f}× without"],
        )
    )


if __name__ == "__main__":
    main()
