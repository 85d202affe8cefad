"""Fetching a source page by page: HTTP with retries, a rate limit, and the pagination kinds.

One page is in memory at a time. 429, 5xx, timeouts and malformed bodies are retried with
jittered backoff, honouring `Retry-After` (seconds or HTTP-date; `0` still pauses, it never
spins); other 4xx fail the run at once with the server's words.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from tributary.errors import PermanentError, TransientError
from tributary.retry import RetryPolicy, retry
from tributary_importer.source import AuthKind, PaginationKind, SourceSpec

MIN_PAUSE_S = 0.2  # floor for Retry-After: 0 (dlt spun on it)


class RetryableHttpError(TransientError):
    """A 429, 5xx, timeout or malformed page: worth another attempt."""

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float:
    """`Retry-After` as seconds (delta-seconds or HTTP-date), at least `MIN_PAUSE_S`."""
    if not value:
        return MIN_PAUSE_S
    value = value.strip()
    if value.isdigit():
        return max(MIN_PAUSE_S, float(value))
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return MIN_PAUSE_S
    return max(MIN_PAUSE_S, (at - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class Page:
    """One page: its records, and how many HTTP attempts it took."""

    number: int
    records: list[dict[str, Any]]
    attempts: int


class RateLimiter:
    """At most `rps` requests per second (evenly spaced)."""

    def __init__(self, rps: float) -> None:
        self._interval = 1.0 / rps
        self._next = 0.0

    async def wait(self) -> None:
        """Pause until the next request may go."""
        now = time.monotonic()
        delay = self._next - now
        self._next = max(now, self._next) + self._interval
        if delay > 0:
            await asyncio.sleep(delay)  # pacing, not a retry: the retry helper is separate


class SourceClient:
    """Pages of one source, from an httpx client the caller owns (keep-alive, timeouts)."""

    def __init__(self, name: str, spec: SourceSpec, http: httpx.AsyncClient) -> None:
        self.name = name
        self.spec = spec
        self._http = http
        self._limiter = RateLimiter(spec.rate_limit_rps)
        self.retries = 0

    def _headers(self) -> dict[str, str]:
        auth = self.spec.auth
        match auth.kind:
            case AuthKind.HEADER:
                return {auth.header: auth.secret}
            case AuthKind.BEARER:
                return {"Authorization": f"Bearer {auth.secret}"}
            case AuthKind.BASIC:
                token = base64.b64encode(f"{auth.username}:{auth.secret}".encode()).decode()
                return {"Authorization": f"Basic {token}"}
        return {}

    async def _get(self, url: str, params: dict[str, str]) -> tuple[Any, httpx.Headers, int]:
        """GET with retries; returns the parsed body, headers and attempts used."""
        attempts = 0

        async def attempt() -> tuple[Any, httpx.Headers]:
            nonlocal attempts
            attempts += 1
            await self._limiter.wait()
            try:
                # params=None, not {}: an empty dict would wipe a next-link's own query string
                response = await self._http.get(
                    url,
                    params=params or None,
                    headers=self._headers(),
                    timeout=self.spec.timeout_s,
                )
            except httpx.TimeoutException as exc:
                raise RetryableHttpError(f"{self.name}: timed out on {url}") from exc
            except httpx.TransportError as exc:
                raise RetryableHttpError(f"{self.name}: {type(exc).__name__} on {url}") from exc
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableHttpError(
                    f"{self.name}: HTTP {response.status_code} on {url}",
                    retry_after_seconds(response.headers.get("retry-after")),
                )
            if response.status_code >= 400:
                raise PermanentError(
                    f"{self.name}: HTTP {response.status_code} on {url}: "
                    f"{response.text[:200]} — check the source's URL, auth "
                    "and parameters"
                )
            try:
                return orjson.loads(response.content), response.headers
            except orjson.JSONDecodeError as exc:
                raise RetryableHttpError(
                    f"{self.name}: malformed JSON page from {url} ({exc.msg})"
                ) from exc

        policy = RetryPolicy(max_attempts=self.spec.max_attempts, base_delay=0.2, max_delay=10)
        body, headers = await retry(attempt, policy, what=f"GET {url}")
        self.retries += attempts - 1
        return body, headers, attempts

    def _records(self, body: Any, url: str) -> list[dict[str, Any]]:
        found = body
        for part in (self.spec.records_path or "").split("."):
            if part:
                found = found.get(part) if isinstance(found, dict) else None
        if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
            raise PermanentError(
                f"{self.name}: {url} did not return a list of objects at "
                f"{self.spec.records_path or 'the top level'}; check records_path"
            )
        return found

    async def pages(self, lower_bound: str | None) -> AsyncIterator[Page]:
        """Every page, in order; the incremental lower bound (inclusive) is sent as a param."""
        spec, paging = self.spec, self.spec.pagination
        url = spec.base_url.rstrip("/") + spec.path
        params = dict(spec.params)
        if spec.incremental is not None and lower_bound is not None:
            params[spec.incremental.param] = lower_bound
        if paging.kind is not PaginationKind.NONE:
            params[paging.size_param] = str(paging.page_size)
        number, page_no, offset = 1, paging.first_page, 0
        while True:
            if paging.kind is PaginationKind.PAGE_NUMBER:
                params[paging.page_param] = str(page_no)
            elif paging.kind is PaginationKind.OFFSET:
                params[paging.offset_param] = str(offset)
            body, headers, attempts = await self._get(url, params)
            records = self._records(body, url)
            yield Page(number, records, attempts)
            number += 1
            match paging.kind:
                case PaginationKind.NONE:
                    return
                case PaginationKind.PAGE_NUMBER | PaginationKind.OFFSET:
                    if len(records) < paging.page_size:
                        return
                    page_no += 1
                    offset += len(records)
                case PaginationKind.CURSOR:
                    cursor = body.get(paging.next_cursor_path) if isinstance(body, dict) else None
                    if not cursor:
                        return
                    params[paging.cursor_param] = str(cursor)
                case PaginationKind.LINK_HEADER:
                    next_url = httpx.Response(200, headers=headers).links.get("next", {}).get("url")
                    if not next_url:
                        return
                    url, params = next_url, {}
