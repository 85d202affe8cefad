"""Pacing requests to a source's rate limit, whatever number of pages are in flight.

Page-number and offset paging keep several pages in flight (`SourceSpec.concurrency`); they all
take their turn from the source's one `RateLimiter`. What it guarantees is what a vendor
counts: no second (any 1 s interval, not only calendar seconds) holds more than ⌊rps⌋ request
arrivals (below 1 request a second: none within 1 / rps of another), whatever the delays.

A request arrives at the vendor some time after it was released (the task is scheduled, gets a
connection, writes it) and before its answer came back; when exactly is not known here. So
each request holds its place from its release until 1 s after it ended (answered, failed or
given up: `slot`), and one is released only while fewer than ⌊rps⌋ places are held. Any two
requests whose arrivals fall within one second therefore both held their place when the later
one was released, and there were never more than ⌊rps⌋ of those. No slack for send jitter is
needed and none is lost to a late pause: a request waits on places freeing, not on the
previous release. The cost: a request holds its place for 1 s plus its round trip, so at most
⌊rps⌋ / (1 s + the round trip) requests a second (0.95× a limit of 40 with the vendor 50 ms
away); a fractional part of a limit above 1 is not used.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

MIN_PAUSE_S = 1e-6  # the shortest pause (pacing, not a retry: the retry helper is separate)


class RateLimiter:
    """At most ⌊rps⌋ requests whose arrival may fall in any one second (one per 1 / rps below
    1 request a second); a request's arrival lies between its release and its end."""

    def __init__(
        self,
        rps: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.burst = max(1, math.floor(rps))
        self.window = max(1.0, self.burst / rps)  # how long a place stays held after the end
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0  # released, not ended: their arrival may still come
        self._ended: list[float] = []  # end times less than `window` ago (a heap)
        self._freed = asyncio.Event()  # a request in flight ended
        self._turn = asyncio.Lock()  # waiters go one after the other, in arrival order

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Pause until a request may go, then hold its place while the caller sends it and
        reads the answer (the block), and for `window` after."""
        await self._acquire()
        try:
            yield
        finally:
            self._in_flight -= 1
            heapq.heappush(self._ended, self._clock())
            self._freed.set()

    async def _acquire(self) -> None:
        async with self._turn:
            ended = self._ended
            while True:
                now = self._clock()
                while ended and ended[0] <= now - self.window:
                    heapq.heappop(ended)  # ended a window ago: no arrival of it can come now
                if self._in_flight + len(ended) < self.burst:
                    break
                if ended:  # the next place frees a window after the earliest end
                    # at least 1 µs: a timer may fire a clock tick early, a float sum round down
                    await self._sleep(max(ended[0] + self.window - now, MIN_PAUSE_S))
                else:  # every place is in flight: wait for one to end
                    self._freed.clear()
                    await self._freed.wait()
            self._in_flight += 1
