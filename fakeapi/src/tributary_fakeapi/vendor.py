"""A realistic vendor's timing: a fixed latency per request, and what rate it was called at.

`FAKEAPI_LATENCY_MS` (or `PUT /__admin/vendor {"latency_ms": 50}`) delays every answer but the
admin routes by that long, as a distant vendor's round trip does. Every request is counted by
its arrival time, so a benchmark can check a client against a rate limit:
`GET /__admin/rate` gives the most requests the API saw in any one second — in a sliding
window (any 1 s interval) and in calendar seconds — and `DELETE /__admin/rate` starts over.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

ADMIN = "/__admin/"


class VendorTiming(BaseModel):
    """The latency knob."""

    latency_ms: float = Field(default=0.0, ge=0, le=60_000)


class RequestRate:
    """The requests seen and the peaks they make, kept as they arrive in bounded memory: the
    arrivals of the last `window_s` (for the sliding peak) and the current calendar second's
    count. Arrivals come in order (time.monotonic(), one event loop)."""

    def __init__(self, window_s: float = 1.0, started: float | None = None) -> None:
        self.window_s = window_s
        # monotonic → wall, for calendar seconds
        self.started = time.time() - time.monotonic() if started is None else started
        self.requests = 0
        self.first: float | None = None  # the first and last arrival
        self.last: float | None = None
        self._recent: deque[float] = deque()
        self._peak = 0
        self._second: int | None = None
        self._in_second = 0
        self._peak_calendar = 0

    def seen(self, at: float) -> None:
        """Count one request arriving at `at` (time.monotonic())."""
        self.requests += 1
        self.first = at if self.first is None else self.first
        self.last = at
        recent = self._recent
        recent.append(at)
        while recent[0] <= at - self.window_s:
            recent.popleft()
        self._peak = max(self._peak, len(recent))
        second = int(self.started + at)
        self._in_second = self._in_second + 1 if second == self._second else 1
        self._second = second
        self._peak_calendar = max(self._peak_calendar, self._in_second)

    def max_in_window(self) -> int:
        """The most requests in any half-open interval [t, t + window_s)."""
        return self._peak

    def max_per_calendar_second(self) -> int:
        """The most requests that arrived within one wall-clock second (floor of the time)."""
        return self._peak_calendar


class VendorState:
    """The knob and the count, shared by the middleware and the admin routes."""

    def __init__(self, latency_ms: float) -> None:
        self.timing = VendorTiming(latency_ms=latency_ms)
        self.rate = RequestRate()


class VendorMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): counts each non-admin request, then delays it."""

    def __init__(self, app: ASGIApp, state: VendorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(ADMIN):
            self.state.rate.seen(time.monotonic())
            delay = self.state.timing.latency_ms / 1000
            if delay:
                await asyncio.sleep(delay)
        await self.app(scope, receive, send)


def install(app: FastAPI, latency_ms: float = 0.0) -> None:
    """Add the latency and request counting to `app`, and its admin routes."""
    state = VendorState(latency_ms)
    app.add_middleware(VendorMiddleware, state=state)
    router = APIRouter()

    @router.put(f"{ADMIN}vendor")
    async def set_timing(knob: VendorTiming) -> VendorTiming:
        state.timing = knob
        return knob

    @router.get(f"{ADMIN}rate")
    async def get_rate() -> dict[str, float]:
        rate = state.rate
        return {
            "requests": rate.requests,
            "max_per_second": rate.max_in_window(),
            "max_per_calendar_second": rate.max_per_calendar_second(),
            # first to last arrival: the rate while requests came, without set-up and wind-down
            "span_s": (rate.last or 0.0) - (rate.first or 0.0),
            "latency_ms": state.timing.latency_ms,
        }

    @router.delete(f"{ADMIN}rate")
    async def reset_rate() -> dict[str, int]:
        state.rate = RequestRate()
        return {"requests": 0}

    app.include_router(router)
