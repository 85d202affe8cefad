"""Part (a) of bench/stream.py: the stream consumer's processing in memory, beside bare loops.

The real Worker (decode, signature check, routing, batching, gzip, chain landing, checkpoints)
on a MemoryStream of 1 KB signed envelopes, CPU time, medians of interleaved rounds, beside a
bare loop doing what a careful hand-written consumer must, the same loop checking signatures,
and the issue's bare read+gzip loop; one untimed run of the worker under cProfile. Also the
envelopes and the worker's configuration that part (b) uses.
"""

from __future__ import annotations

import asyncio
import cProfile
import gzip
import pstats
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.envelope import EnvelopeVerifier, sign_envelope
from tributary.raw_writer import RawObject
from tributary.testing import MemoryMetrics, MemoryRawWriter
from tributary_stream.consumer import Limits
from tributary_stream.route import Router
from tributary_stream.stream import MIN_POLL_GAP_S
from tributary_stream.testing import MemoryLeaseStore, MemoryStream
from tributary_stream.worker import Worker, WorkerConfig

ROOT = Path(__file__).resolve().parents[1]

REGISTRY = DatasetRegistry.from_file(ROOT / "config" / "datasets.yaml")
PAD = "x" * 880


# The API signs its envelopes; the consumer trusts only those (ENVELOPE_SIGNING_KEY).
SIGNING_KEY = "bench-envelope-signing-key-0123456789"


def envelope(i: int) -> bytes:
    """A ~1 KB API envelope, signed as the API puts it on the stream."""
    return sign_envelope(unsigned(i), SIGNING_KEY.encode())


def unsigned(i: int) -> bytes:
    """The envelope as it lands in raw."""
    return orjson.dumps(
        {
            "v": 1,
            "dataset": "events",
            "id": f"e{i}",
            "source": "bench",
            "received_at": "2026-01-01T00:00:00.000Z",
            "data": {"type": "click", "n": i, "pad": PAD},
        }
    )


IDLE_FLUSH_S = 0.3  # a shard's batch lands once the shard has been idle this long
IDLE_POLL_S = MIN_POLL_GAP_S  # an idle shard is polled this often (the least allowed)


def worker(
    store: Any,
    reader: Any,
    writer: Any,
    worker_id: str = "bench",
    flush_when_caught_up: bool = False,
) -> Worker:
    return Worker(
        WorkerConfig(
            worker_id=worker_id,
            limits=Limits(10_000, 8 * 1024 * 1024, 3600, IDLE_FLUSH_S, flush_when_caught_up),
            failover_time_s=10,  # the default: renewals must not miss on a loaded moto
            # shard sync at its default (30 s): the first runs at once; more only load moto
            idle_poll_s=IDLE_POLL_S,
            tick_s=0.05,
        ),
        store,
        reader,
        Router(REGISTRY, "kinesis:bench", signing_key=SIGNING_KEY.encode()),
        writer,
        SystemClock(),
        MemoryMetrics(),
    )


async def bare_loop(stream: MemoryStream, verify: bool, decode: bool = True) -> float:
    """CPU seconds for a careful hand-written consumer: every page read, each record decoded to
    find its dataset (and, with `verify`, its signature checked), each dataset's lines gzipped
    into one object per page and written. No checkpoints, no exactly-once. With `decode=False`
    it is the issue's bare read+gzip loop: each page's lines gzipped as one object, unread."""
    writer = MemoryRawWriter()
    verifier = EnvelopeVerifier([SIGNING_KEY.encode()])
    started = time.process_time()
    for shard in stream.shards:
        iterator = await stream.iterator(shard, "TRIM_HORIZON", None)
        while True:
            page = await stream.get_records(iterator, 10_000)
            by_dataset: dict[str, list[bytes]] = defaultdict(list)
            for r in page.records:
                if verify and verifier.verify(r.data) is None:
                    raise RuntimeError("unsigned record in the bench stream")
                by_dataset[orjson.loads(r.data)["dataset"] if decode else "all"].append(r.data)
            for dataset, lines in by_dataset.items():
                first, last = page.records[0].sequence, page.records[-1].sequence
                body = gzip.compress(b"\n".join(lines) + b"\n", 6, mtime=0)
                await writer.put(
                    RawObject(f"bare/{dataset}/{shard}-{first}", body, len(lines), first, last)
                )
            if not page.records or page.next_iterator is None:
                break
            iterator = page.next_iterator
    return time.process_time() - started


async def ours_worker(stream: MemoryStream, records: int) -> float:
    """CPU seconds for the real Worker to land and checkpoint every record."""
    writer = MemoryRawWriter()
    w = worker(MemoryLeaseStore(), stream, writer)
    stop = asyncio.Event()
    started = time.process_time()
    task = asyncio.create_task(w.run(stop))
    while sum(o.record_count for o in writer.objects.values()) < records:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    ours = time.process_time() - started
    stop.set()
    await task
    return ours


async def profile_ours(stream: MemoryStream, records: int, top: int = 6) -> list[str]:
    """One untimed run of the worker under cProfile: the functions with the most own time,
    each as a share of the run's busy time (the event loop's idle epoll wait left out)."""
    profiler = cProfile.Profile()
    profiler.enable()
    await ours_worker(stream, records)
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries = {
        key: value
        for key, value in stats.stats.items()  # type: ignore[attr-defined]
        if "select.epoll" not in key[2]
    }
    total = sum(entry[2] for entry in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return [
        f"{Path(file).name}:{line} {name} {own / total:.0%}"
        for (file, line, name), (_, _, own, _, _) in ranked
    ]


async def part_a(records: int, rounds: int) -> tuple[list[list[object]], dict[str, Any]]:
    """The table rows, and the raw figures: per-round CPU seconds, medians, ours' ratio to the
    bare loop from the raw medians and per round."""
    stream = MemoryStream(4)
    shards = list(stream.shards)
    payload = [envelope(i) for i in range(records)]
    for i, data in enumerate(payload):
        stream.put(shards[i % 4], data)
    size = sum(len(p) for p in payload)
    times: dict[str, list[float]] = {"bare_gzip": [], "bare": [], "bare_verify": [], "ours": []}
    for _ in range(rounds):  # interleaved; CPU time: "per core"
        times["bare_gzip"].append(await bare_loop(stream, verify=False, decode=False))
        times["bare"].append(await bare_loop(stream, verify=False))
        times["bare_verify"].append(await bare_loop(stream, verify=True))
        times["ours"].append(await ours_worker(stream, records))
    median = {k: statistics.median(v) for k, v in times.items()}
    bare, bare_gzip = median["bare"], median["bare_gzip"]
    mb = size / 1e6

    def row(label: str, key: str, base: bool = False) -> list[object]:
        cpu = median[key]
        ratio = "1.00 (baseline)" if base else f"{bare / cpu:.2f}"
        per_round = [b / c for b, c in zip(times["bare"], times[key], strict=True)]
        spread = "—" if base else f"{min(per_round):.2f}–{max(per_round):.2f}"
        return [
            label,
            f"{mb / cpu:,.1f}",
            f"{records / cpu:,.0f}",
            ratio,
            spread,
            f"{bare_gzip / cpu:.2f}",
            f"{mb / cpu / 2:,.1f}×",
        ]

    rounds_ratio = [b / o for b, o in zip(times["bare"], times["ours"], strict=True)]
    profile = await profile_ours(stream, records)
    figures = {
        "mb": mb,
        "cpu_s": times,
        "median_cpu_s": median,
        "ratio": bare / median["ours"],
        "ratio_rounds": rounds_ratio,
        "ratio_vs_gzip": bare_gzip / median["ours"],
        "ratio_vs_gzip_rounds": [
            g / o for g, o in zip(times["bare_gzip"], times["ours"], strict=True)
        ],
        "profile": profile,
    }
    return [
        row("bare: read, gzip, write (the issue's bare loop)", "bare_gzip"),
        row("bare: read, decode, gzip, write", "bare", base=True),
        row("bare: read, decode, verify signature, gzip, write", "bare_verify"),
        row("tributary worker", "ours"),
    ], figures
