"""The API over the wire with the production Kinesis sink path (`KinesisSink`, signed envelopes)
whose PutRecords holds each call until `--hold` calls are waiting together (or `--wait-s`
passes): every accepted request is then in memory at once, as behind a slow stream.

Run: `python -m tests.api.held_kinesis_server --port P --hold 8` with the API's environment
(API_KEYS, ENVELOPE_SIGNING_KEY, API_MAX_IN_FLIGHT_BYTES...). Used by tests/api/test_memory.py
and bench/api_memory.py.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from tributary.memory_writer import MemoryRawWriter
from tributary.metrics import Metrics
from tributary_api.app import Backends, create_app
from tributary_api.settings import ApiSettings
from tributary_api.sink import KinesisSink


class HeldKinesis:
    """A Kinesis client whose PutRecords accepts every entry once `hold` calls wait together."""

    def __init__(self, hold: int, wait_s: float) -> None:
        self._hold = hold
        self._wait_s = wait_s
        self._waiting = 0
        self._full = asyncio.Event()

    async def put_records(self, StreamName: str, Records: list[Any]) -> dict[str, Any]:
        self._waiting += 1
        if self._waiting >= self._hold:
            self._full.set()
        try:
            async with asyncio.timeout(self._wait_s):
                await self._full.wait()
        except TimeoutError:
            pass
        finally:
            self._waiting -= 1
            if not self._waiting:
                self._full.clear()
        return {
            "FailedRecordCount": 0,
            "Records": [{"SequenceNumber": "1", "ShardId": "shardId-0"} for _ in Records],
        }

    async def describe_stream_summary(self, StreamName: str) -> dict[str, Any]:
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hold", type=int, default=8)
    parser.add_argument("--wait-s", type=float, default=5.0)
    args = parser.parse_args()
    settings = ApiSettings()
    kinesis = HeldKinesis(args.hold, args.wait_s)

    @asynccontextmanager
    async def backends(_: ApiSettings, metrics: Metrics) -> AsyncIterator[Backends]:
        sink = KinesisSink(kinesis, "held", metrics, settings.signing_key())  # type: ignore[arg-type]
        yield Backends(sink, MemoryRawWriter())

    app = create_app(settings, backends=backends)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
