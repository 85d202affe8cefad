"""In-process API fixtures: the real app with in-memory backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tributary.dataset import DatasetRegistry
from tributary.raw_writer import RawObject
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_api.app import create_app
from tributary_api.auth import hash_key
from tributary_api.settings import ApiSettings
from tributary_api.testing import FlakySink, fixed_backends

KEY = "test-key-all"
POSTS_KEY = "test-key-posts"
AUTH = {"Authorization": f"Bearer {KEY}"}


def api_settings(**overrides: Any) -> ApiSettings:
    env: dict[str, Any] = {
        "API_KEYS": [
            {"name": "all", "sha256": hash_key(KEY)},
            {"name": "posts-only", "sha256": hash_key(POSTS_KEY), "datasets": ["posts"]},
        ],
        "API_SINK": "memory",
    }
    env.update(overrides)
    return ApiSettings.model_validate(env)


@dataclass
class InProcessApi:
    client: httpx.AsyncClient
    sink: FlakySink
    quarantine: MemoryRawWriter
    clock: FakeClock
    metrics: MemoryMetrics

    def nothing_written(self) -> bool:
        return not self.sink.deliveries and not self.quarantine.objects

    def quarantined(self) -> dict[str, RawObject]:
        """Quarantine objects (the lake writer also holds the Idempotency-Key claims)."""
        return {k: v for k, v in self.quarantine.objects.items() if k.startswith("quarantine/")}

    def claims(self) -> dict[str, RawObject]:
        """Idempotency-Key claims."""
        return {k: v for k, v in self.quarantine.objects.items() if k.startswith("_idempotency/")}


ApiFactory = Callable[..., Any]


@pytest.fixture
def make_api(registry: DatasetRegistry) -> ApiFactory:
    """`async with make_api(**settings) as api:` runs the app (with lifespan) in-process."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[InProcessApi]:
        sink, quarantine = FlakySink(), MemoryRawWriter()
        clock, metrics = FakeClock(), MemoryMetrics()
        app = create_app(
            api_settings(**overrides),
            registry=registry,
            backends=fixed_backends(sink, quarantine),
            clock=clock,
            metrics=metrics,
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield InProcessApi(client, sink, quarantine, clock, metrics)

    return start


@pytest.fixture
async def api(make_api: ApiFactory) -> AsyncIterator[InProcessApi]:
    async with make_api() as started:
        yield started
