"""The request handlers behind `create_app`'s routes: readiness, admission (key, dataset, rate,
in-flight budget) and ingestion, over one `Handlers` instance per app."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError, TransientError, TributaryError
from tributary.raw_writer import RawWriter
from tributary_api.auth import ApiKey, KeyRing
from tributary_api.body import BodyError, body_format, is_gzip, read_body
from tributary_api.fastpath import Entry, FastBatch, FastPath
from tributary_api.ingest import Ingestor, IngestRequest, IngestResult
from tributary_api.ratelimit import TokenBucketLimiter
from tributary_api.refusal import HttpError, ingest_refusal
from tributary_api.settings import ApiSettings
from tributary_api.sink import Sink

log = logging.getLogger("tributary_api.app")

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True, slots=True)
class Backends:
    """The side effects the API needs: where records go and where rejects go."""

    sink: Sink
    quarantine: RawWriter


@dataclass(slots=True)
class Handlers:
    """What the routes do; `backends` and `ingestor` are set by the app's lifespan."""

    settings: ApiSettings
    registry: DatasetRegistry
    keyring: KeyRing
    limiter: TokenBucketLimiter | None
    retry_after: dict[str, str]
    fast_path: FastPath
    backends: Backends | None = None
    ingestor: Ingestor | None = None
    in_flight: int = 0
    in_flight_bytes: int = 0

    async def readyz(self) -> Response:
        """Readiness: the sink and the quarantine store are reachable."""
        settings = self.settings
        wired = self.backends
        if wired is None:
            raise RuntimeError("the app's lifespan has not started")
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

    async def post_records(self, request: Request) -> Response:
        """The FastAPI route's body: `ingest_records` (the ingest middleware serves most
        requests below routing, `tributary_api.asgi`)."""
        status, body = await self.ingest_records(
            request.headers, request.path_params["dataset"], request.stream()
        )
        return Response(body, status, media_type="application/json")

    async def ingest_records(
        self, headers: Mapping[str, str], dataset: str, chunks: AsyncIterator[bytes]
    ) -> tuple[int, bytes]:
        """Admit the request (key, dataset, rate, in-flight budget), then ingest it: the
        answer's status and JSON body, or `HttpError` for a refusal."""
        settings = self.settings
        key, dataset, idempotency_key = self._admit(headers, dataset)
        reserved = _reservation(headers, settings.max_body_bytes)
        if (
            self.in_flight >= settings.max_in_flight
            or self.in_flight_bytes + reserved > settings.max_in_flight_bytes
        ):
            raise HttpError(
                503, "overloaded", "too many requests in flight; retry shortly", self.retry_after
            )
        self.in_flight += 1
        self.in_flight_bytes += reserved
        try:
            return await self._ingest(headers, chunks, key, dataset, idempotency_key)
        finally:
            self.in_flight -= 1
            self.in_flight_bytes -= reserved

    def _admit(self, headers: Mapping[str, str], dataset: str) -> tuple[ApiKey, str, str | None]:
        """(key, dataset, Idempotency-Key) of an authenticated, allowed, unthrottled request."""
        # Parameters are read here rather than declared: FastAPI's per-request dependency
        # solving cost more than the rest of a small request. `ingest_openapi` documents them.
        key = self.keyring.authenticate(_presented_key(headers))
        if key is None:
            raise HttpError(
                401,
                "unauthorized",
                "send a valid API key as 'Authorization: Bearer <key>' or 'X-API-Key'",
                {"WWW-Authenticate": "Bearer"},
            )
        target = self.registry.get(dataset)
        if target is None or not key.may_write(dataset):
            # One answer for both: a key learns nothing about datasets it may not write.
            raise HttpError(
                404,
                "unknown_dataset",
                f"dataset {dataset!r} is not one this key may write; it may write: "
                f"{sorted(d for d in self.registry if key.may_write(d))}",
            )
        if self.limiter is not None and (wait := self.limiter.acquire(key.name)) > 0:
            raise HttpError(
                429,
                "rate_limited",
                f"API key {key.name!r} is over {self.settings.rate_limit_rps:g} requests/s",
                {"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        idempotency_key = headers.get("idempotency-key")
        if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise HttpError(
                400, "bad_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters"
            )
        return key, target.name, idempotency_key

    async def _ingest(
        self,
        headers: Mapping[str, str],
        chunks: AsyncIterator[bytes],
        key: ApiKey,
        dataset: str,
        idempotency_key: str | None,
    ) -> tuple[int, bytes]:
        records = await self._read_records(headers, chunks, dataset)
        request_id = idempotency_key or uuid.uuid4().hex
        ingestor = self.ingestor
        if ingestor is None:
            raise RuntimeError("the app's lifespan has not started")
        ingest_request = IngestRequest(
            key.name, self.registry[dataset], records, request_id, idempotency_key is not None
        )
        try:
            async with asyncio.timeout(self.settings.sink_timeout_s):
                result = await ingestor.ingest(ingest_request)
        except (TributaryError, TimeoutError) as exc:
            raise ingest_refusal(
                exc, dataset, request_id, self.retry_after, idempotent=idempotency_key is not None
            ) from exc
        status = 202 if result.accepted else 422
        return status, orjson.dumps(_result_body(result, request_id))

    async def _read_records(
        self, headers: Mapping[str, str], chunks: AsyncIterator[bytes], dataset: str
    ) -> list[Entry] | FastBatch:
        """The body's records, refused (413, 415, 400) before parsing whatever can be."""
        settings = self.settings
        try:
            fmt = body_format(headers.get("content-type"))
            gzipped = is_gzip(headers.get("content-encoding"))
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > settings.max_body_bytes:
                raise BodyError(
                    413,
                    "body_too_large",
                    f"request body exceeds the limit of {settings.max_body_bytes} bytes",
                )
            body = await read_body(chunks, gzipped=gzipped, limit=settings.max_body_bytes)
            entries = self.fast_path.read(
                dataset, body, fmt, settings.max_body_values, settings.max_records
            )
        except BodyError as exc:
            raise HttpError(exc.status, exc.code, str(exc)) from exc
        # The records' texts are views of the body (msgspec.Raw) or copies of it: the body
        # stays alive until the request ends.
        return entries


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
