"""The FastAPI application: HTTP in, `Ingestor` out. No import-time state; see `create_app`.

No `from __future__ import annotations` here: FastAPI must evaluate the route annotations,
and the dataset parameter's schema refers to the registry given to `create_app`.
"""

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from tributary.aws import AwsClients
from tributary.clock import Clock, SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError, TransientError, TributaryError, describe_problems
from tributary.memory_writer import MemoryRawWriter
from tributary.metrics import EmfMetrics, Metrics
from tributary.raw_writer import RawWriter
from tributary.retry import RetryPolicy
from tributary.s3_writer import S3RawWriter
from tributary_api.auth import ApiKey, KeyRing
from tributary_api.body import BodyError, body_format, is_gzip, parse_records, read_body
from tributary_api.ingest import Ingestor, IngestRequest, IngestResult
from tributary_api.models import (
    INGEST_RESPONSES,
    SECURITY_SCHEMES,
    HealthResponse,
    IngestResponse,
    ingest_openapi,
)
from tributary_api.openapi import OPENAPI_VERSION, per_dataset, to_openapi_30
from tributary_api.ratelimit import TokenBucketLimiter
from tributary_api.refusal import HttpError, ingest_refusal
from tributary_api.settings import ApiSettings, SinkKind
from tributary_api.sink import KinesisSink, MemorySink, S3Sink, Sink

log = logging.getLogger(__name__)

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True, slots=True)
class Backends:
    """The side effects the API needs: where records go and where rejects go."""

    sink: Sink
    quarantine: RawWriter


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
            )
        else:
            sink = S3Sink(lake)
        yield Backends(sink, lake)


def _presented_key(headers: Mapping[str, str]) -> str | None:
    """The secret from `Authorization: Bearer <key>`, else from `X-API-Key`."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


def _reservation(headers: Mapping[str, str], cap: int) -> int:
    """The body bytes a request may hold, for the in-flight budget: its declared length when
    plain (a longer body is cut at it by the server), else the cap (gzip or chunked)."""
    declared = headers.get("content-length", "")
    plain = headers.get("content-encoding", "identity").strip().lower() in ("", "identity")
    if declared.isdigit() and plain:
        return min(int(declared), cap)
    return cap


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _result_body(result: IngestResult, request_id: str) -> dict[str, Any]:
    return {
        "accepted": result.accepted,
        "rejected": result.rejected,
        "ids": result.ids,
        "errors": [
            {"index": e.index, "field": e.field, "message": e.message} for e in result.errors
        ],
        "request_id": request_id,
    }


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
    retry_after = {"Retry-After": str(settings.retry_after_s)}
    state: dict[str, Any] = {"in_flight": 0, "in_flight_bytes": 0}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with backends(settings, metrics) as wired:
            state["backends"] = wired
            state["ingestor"] = Ingestor(
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
        body = {"error": exc.code, "message": exc.message}
        if exc.request_id is not None:
            body["request_id"] = exc.request_id
        return _json(exc.status, body, exc.headers)

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
        wired: Backends = state["backends"]
        # Unauthenticated: the answer names the failing component only; the cause (which names
        # the bucket, and so the account) goes to the log.
        for component, ping in (("sink", wired.sink.ping), ("quarantine", wired.quarantine.ping)):
            try:
                async with asyncio.timeout(3):
                    await ping()
            except (TransientError, PermanentError, TimeoutError) as exc:
                log.warning(
                    "not ready",
                    extra={"component": component, "error": str(exc) or "timed out"},
                )
                return _json(
                    503,
                    {"status": "unavailable", "sink": settings.sink.value, "component": component},
                )
        return _json(200, {"status": "ready", "sink": settings.sink.value})

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
        # Parameters are read here rather than declared: FastAPI's per-request dependency
        # solving cost more than the rest of a small request. `ingest_openapi` documents them.
        headers = request.headers
        dataset: str = request.path_params["dataset"]
        key = keyring.authenticate(_presented_key(headers))
        if key is None:
            raise HttpError(
                401,
                "unauthorized",
                "send a valid API key as 'Authorization: Bearer <key>' or 'X-API-Key'",
                {"WWW-Authenticate": "Bearer"},
            )
        target = registry.get(dataset)
        if target is None or not key.may_write(dataset):
            # One answer for both: a key learns nothing about datasets it may not write.
            raise HttpError(
                404,
                "unknown_dataset",
                f"dataset {dataset!r} is not one this key may write; it may write: "
                f"{sorted(d for d in registry if key.may_write(d))}",
            )
        if limiter is not None and (wait := limiter.acquire(key.name)) > 0:
            raise HttpError(
                429,
                "rate_limited",
                f"API key {key.name!r} is over {settings.rate_limit_rps:g} requests/s",
                {"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        idempotency_key = headers.get("idempotency-key")
        if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise HttpError(
                400, "bad_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters"
            )
        reserved = _reservation(headers, settings.max_body_bytes)
        if (
            state["in_flight"] >= settings.max_in_flight
            or state["in_flight_bytes"] + reserved > settings.max_in_flight_bytes
        ):
            raise HttpError(
                503, "overloaded", "too many requests in flight; retry shortly", retry_after
            )
        state["in_flight"] += 1
        state["in_flight_bytes"] += reserved
        try:
            return await _ingest(request, key, target.name, idempotency_key)
        finally:
            state["in_flight"] -= 1
            state["in_flight_bytes"] -= reserved

    default_openapi = app.openapi

    def openapi_with_security() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = default_openapi()
            spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            per_dataset(spec, registry, settings.max_records)
            app.openapi_schema = to_openapi_30({**spec, "openapi": OPENAPI_VERSION})
        return app.openapi_schema or {}

    app.openapi = openapi_with_security  # type: ignore[method-assign]

    async def _ingest(
        request: Request, key: ApiKey, dataset: str, idempotency_key: str | None
    ) -> Response:
        try:
            fmt = body_format(request.headers.get("content-type"))
            gzipped = is_gzip(request.headers.get("content-encoding"))
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > settings.max_body_bytes:
                raise BodyError(
                    413,
                    "body_too_large",
                    f"request body exceeds the limit of {settings.max_body_bytes} bytes",
                )
            # The body is bound to no name here: once parsed, only its records are held.
            records = parse_records(
                await read_body(request.stream(), gzipped=gzipped, limit=settings.max_body_bytes),
                fmt,
                settings.max_body_values,
                settings.max_records,  # counted on the bytes: refused before parsing
            )
        except BodyError as exc:
            raise HttpError(exc.status, exc.code, str(exc)) from exc
        request_id = idempotency_key or uuid.uuid4().hex
        ingestor: Ingestor = state["ingestor"]
        ingest_request = IngestRequest(
            key.name, registry[dataset], records, request_id, idempotency_key is not None
        )
        try:
            async with asyncio.timeout(settings.sink_timeout_s):
                result = await ingestor.ingest(ingest_request)
        except (TributaryError, TimeoutError) as exc:
            raise ingest_refusal(
                exc, dataset, request_id, retry_after, idempotent=idempotency_key is not None
            ) from exc
        status = 202 if result.accepted else 422
        return _json(status, _result_body(result, request_id))

    app.state.settings = settings
    app.state.runtime = state
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
