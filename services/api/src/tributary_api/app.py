"""The FastAPI application: HTTP in, `Ingestor` out. No import-time state; see `create_app`.

No `from __future__ import annotations` here: FastAPI must evaluate the route annotations,
and the dataset parameter's schema refers to the registry given to `create_app`.
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from tributary.aws import AwsClients
from tributary.clock import Clock, SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import describe_problems
from tributary.memory_writer import MemoryRawWriter
from tributary.metrics import EmfMetrics, Metrics
from tributary.retry import RetryPolicy
from tributary.s3_writer import S3RawWriter
from tributary_api.asgi import IngestMiddleware, ingest_paths
from tributary_api.auth import ApiKey, KeyRing
from tributary_api.fastpath import FastPath
from tributary_api.handlers import Backends, Handlers
from tributary_api.ingest import Ingestor
from tributary_api.models import (
    INGEST_RESPONSES,
    SECURITY_SCHEMES,
    HealthResponse,
    IngestResponse,
    ingest_openapi,
)
from tributary_api.openapi import OPENAPI_VERSION, per_dataset, to_openapi_30
from tributary_api.ratelimit import TokenBucketLimiter
from tributary_api.refusal import HttpError, refusal_body
from tributary_api.settings import ApiSettings, SinkKind
from tributary_api.sink import KinesisSink, MemorySink, S3Sink, Sink

log = logging.getLogger(__name__)

__all__ = ["Backends", "BackendsFactory", "configured_backends", "create_app", "keyring_from"]

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


BackendsFactory = Callable[[ApiSettings, Metrics], AbstractAsyncContextManager[Backends]]


@asynccontextmanager
async def configured_backends(settings: ApiSettings, metrics: Metrics) -> AsyncIterator[Backends]:
    """The backends `API_SINK` asks for, with AWS clients opened for the app's lifetime."""
    if settings.sink is SinkKind.MEMORY:
        # keep=0: count only. Retaining deliveries would grow the heap that the GC rescans.
        yield Backends(MemorySink(keep=0), MemoryRawWriter())
        return
    async with AwsClients(settings) as clients:
        lake = S3RawWriter(await clients.s3(), settings.lake_bucket)
        sink: Sink
        if settings.sink is SinkKind.KINESIS:
            policy = RetryPolicy(
                max_attempts=settings.sink_max_attempts, base_delay=0.05, max_delay=1.0
            )
            sink = KinesisSink(
                await clients.kinesis(),
                settings.stream_name,
                metrics,
                settings.signing_key(),
                policy,
                aggregate_max_bytes=(
                    settings.kinesis_aggregate_max_bytes if settings.kinesis_aggregate else None
                ),
            )
        else:
            sink = S3Sink(lake)
        yield Backends(sink, lake)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def keyring_from(settings: ApiSettings) -> KeyRing:
    """The configured API keys."""
    return KeyRing(
        ApiKey(
            k.name, bytes.fromhex(k.sha256), None if k.datasets is None else frozenset(k.datasets)
        )
        for k in settings.keys
    )


def create_app(
    settings: ApiSettings,
    *,
    registry: DatasetRegistry | None = None,
    backends: BackendsFactory = configured_backends,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """Build the app from settings and collaborators (real ones unless given)."""
    registry = (
        registry if registry is not None else DatasetRegistry.from_file(settings.datasets_config)
    )
    clock = clock or SystemClock()
    metrics = metrics or EmfMetrics(settings.metrics_namespace, "api")
    keyring = keyring_from(settings)
    limiter = (
        TokenBucketLimiter(
            settings.rate_limit_rps,
            max(settings.rate_limit_burst, settings.rate_limit_rps, 1.0),
            clock,
        )
        if settings.rate_limit_rps > 0
        else None
    )
    handlers = Handlers(
        settings,
        registry,
        keyring,
        limiter,
        {"Retry-After": str(settings.retry_after_s)},
        FastPath(list(registry.values())),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with backends(settings, metrics) as wired:
            handlers.backends = wired
            handlers.ingestor = Ingestor(
                wired.sink, wired.quarantine, clock, metrics, settings.max_record_bytes
            )
            flusher = asyncio.create_task(_flush_periodically(metrics, settings.metrics_interval_s))
            log.info(
                "api ready",
                extra={
                    "sink": settings.sink.value,
                    "datasets": list(registry),
                    "keys": len(keyring),
                },
            )
            try:
                yield
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                metrics.flush()

    app = FastAPI(
        title="Tributary ingestion API",
        version="1.0.0",
        description=(
            "POST records to a dataset. A 202 means every accepted record is durable in the sink "
            "(Kinesis or S3); rejected records are in quarantine with their reasons. Send an "
            "`Idempotency-Key` to make retries safe: ids derive from it."
        ),
        lifespan=lifespan,
    )

    @app.exception_handler(HttpError)
    async def _http_error(_: Request, exc: HttpError) -> Response:
        metrics.add("RequestsRefused", 1, code=exc.code)
        return Response(refusal_body(exc), exc.status, exc.headers, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        problems = describe_problems(exc.errors())
        return _json(400, {"error": "bad_request", "message": problems})

    @app.get("/healthz", response_model=HealthResponse, tags=["health"])
    async def healthz() -> HealthResponse:
        """Liveness: the process serves requests."""
        return HealthResponse(status="ok")

    @app.get(
        "/readyz",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "The sink is unreachable."}},
        tags=["health"],
    )
    async def readyz() -> Response:
        """Readiness: the sink and the quarantine store are reachable."""
        return await handlers.readyz()

    @app.post(
        "/v1/datasets/{dataset}/records",
        status_code=202,
        response_model=IngestResponse,
        responses={**INGEST_RESPONSES},
        openapi_extra=ingest_openapi(sorted(registry)),
        tags=["ingest"],
        summary="Ingest records into a dataset",
    )
    async def post_records(request: Request) -> Response:
        """Validate and ingest records; 202 only once every accepted record is durable."""
        return await handlers.post_records(request)

    # The ingest route's requests are answered below FastAPI's routing (same handler, same
    # answers); the route above stays for OpenAPI and for datasets the registry does not name.
    app.add_middleware(
        IngestMiddleware, handlers=handlers, metrics=metrics, paths=ingest_paths(registry)
    )

    default_openapi = app.openapi

    def openapi_with_security() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = default_openapi()
            spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            per_dataset(spec, registry, settings.max_records)
            app.openapi_schema = to_openapi_30({**spec, "openapi": OPENAPI_VERSION})
        return app.openapi_schema or {}

    app.openapi = openapi_with_security  # type: ignore[method-assign]

    app.state.settings = settings
    app.state.runtime = handlers
    return app


async def _flush_periodically(metrics: Metrics, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        metrics.flush()


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn (`--factory`): settings are read here, in each worker, not at import."""
    from tributary.log import configure_logging

    settings = ApiSettings()
    configure_logging("api", settings.log_level)
    return create_app(settings)
