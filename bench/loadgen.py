"""A small closed-loop HTTP/1.1 load generator (keep-alive, N connections), run as its own process.

`python bench/loadgen.py URL_PATH PORT BODY_FILE CONNECTIONS SECONDS` prints one JSON line:
requests, errors, elapsed seconds, status counts and latency percentiles. bench/api.py measures
with wrk and drives the bare server with this one too in the same rounds, to show which of the
two generators holds the baseline back.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import orjson


async def connection(
    port: int,
    request: bytes,
    stop_at: float,
    warm_until: float,
    latencies: list[float],
    statuses: Counter[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (start := time.perf_counter()) < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if start >= warm_until:
                latencies.append(time.perf_counter() - start)
                statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def run(
    path: str, port: int, body: bytes, connections: int, seconds: float, headers: dict[str, str]
) -> dict[str, object]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body
    warm = 0.5
    now = time.perf_counter()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    await asyncio.gather(
        *(
            connection(port, request, now + warm + seconds, now + warm, latencies, statuses)
            for _ in range(connections)
        )
    )
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0
        )

    return {
        "requests": len(latencies),
        "seconds": seconds,
        "statuses": {str(k): v for k, v in statuses.items()},
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def main() -> None:
    path, port, body_file, connections, seconds, headers = sys.argv[1:7]
    result = asyncio.run(
        run(
            path,
            int(port),
            Path(body_file).read_bytes(),
            int(connections),
            float(seconds),
            orjson.loads(headers),
        )
    )
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
