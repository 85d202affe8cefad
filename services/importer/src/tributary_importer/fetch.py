"""Fetching a source page by page: HTTP with retries, a rate limit, and the pagination kinds.

One page is in memory at a time. 429, 5xx, timeouts and malformed bodies are retried with
jittered backoff, honouring `Retry-After` (seconds or HTTP-date; `0` still pauses, it never
spins); other 4xx fail the run at once with the server's words.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import orjson

from tributary.errors import PermanentError, TransientError, TributaryError
from tributary.retry import RetryPolicy, retry
from tributary_importer.source import AuthKind, PaginationKind, SourceSpec, origin_of

MIN_PAUSE_S = 0.2  # floor for Retry-After: 0 (dlt spun on it)
REDACTED = "***"


def redact_url(
    url: str | httpx.URL, loggable: Collection[str] = (), paths: Collection[str] | None = None
) -> str:
    """`url` fit for a log: no user info, every query value redacted but the `loggable` ones
    (a vendor's next-page link may carry a token, a source's params an API key), and, when
    `paths` is given, a path that is not one of them redacted (a token in a link's path)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    query = "&".join(
        f"{k}={v if k in loggable else REDACTED}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    path = parts.path
    if paths is not None and path not in paths:
        path = f"/{REDACTED}"
    return urlunsplit((parts.scheme, netloc, path, query, ""))


class RedactUrls(logging.Filter):
    """Redacts the URLs httpx logs ("HTTP Request: GET <url> …") before any handler sees them."""

    def __init__(self, loggable: Collection[str], paths: Collection[str] | None = None) -> None:
        super().__init__()
        self._loggable = frozenset(loggable)
        self._paths = frozenset(paths) if paths is not None else None

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite URL arguments; never drops a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(a, self._loggable, self._paths) if isinstance(a, httpx.URL) else a
                for a in record.args
            )
        return True


def install_log_redaction(specs: Iterable[SourceSpec]) -> RedactUrls:
    """Make httpx's request log ("HTTP Request: GET <url>") show URLs as our own messages do:
    only the sources' loggable parameters and paths. Returns the filter it installed."""
    specs = list(specs)
    redact = RedactUrls(
        frozenset().union(*(s.loggable_params() for s in specs)),
        frozenset().union(*(s.loggable_paths() for s in specs)),
    )
    logging.getLogger("httpx").addFilter(redact)
    return redact


@contextlib.contextmanager
def redact_http_logs(specs: Iterable[SourceSpec]) -> Iterator[None]:
    """`install_log_redaction` while open."""
    redact = install_log_redaction(specs)
    try:
        yield
    finally:
        logging.getLogger("httpx").removeFilter(redact)


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
    """One page: its records, how many HTTP attempts it took, and the exact text of cursor
    values that JSON decoding turned into floats (decimals, integers past 64 bits), by index."""

    number: int
    records: list[dict[str, Any]]
    attempts: int
    exact: dict[int, str] = field(default_factory=dict)


class _Literal(str):
    """A JSON number kept as the text it was sent as."""

    __slots__ = ()


def exact_numbers(content: bytes, records_path: str | None, name: str) -> list[str | None]:
    """The number literal of field `name` in each record of a JSON page (None where it is not
    a number): orjson, like a float, cannot tell 1.00000000000000000001 from 1.0 or
    2^64 + 1 from 2^64."""
    found: Any = json.loads(content, parse_float=_Literal, parse_int=_Literal)
    for part in (records_path or "").split("."):
        if part:
            found = found.get(part) if isinstance(found, dict) else None
    return [
        str(r.get(name)) if isinstance(r, dict) and isinstance(r.get(name), _Literal) else None
        for r in (found if isinstance(found, list) else [])
    ]


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

    def _shown(self, url: str | httpx.URL) -> str:
        return redact_url(url, self.spec.loggable_params(), self.spec.loggable_paths())

    def _headers(self, url: str) -> dict[str, str]:
        """The auth headers, for the source's own origin only: a next-page link to another
        host gets no credentials."""
        auth = self.spec.auth
        if origin_of(url) != self.spec.origin():
            return {}
        match auth.kind:
            case AuthKind.HEADER:
                return {auth.header: auth.secret}
            case AuthKind.BEARER:
                return {"Authorization": f"Bearer {auth.secret}"}
            case AuthKind.BASIC:
                token = base64.b64encode(f"{auth.username}:{auth.secret}".encode()).decode()
                return {"Authorization": f"Basic {token}"}
        return {}

    async def _get(self, url: str, params: dict[str, str]) -> tuple[Any, bytes, httpx.Headers, int]:
        """GET with retries; returns the parsed body, its bytes, headers and attempts used."""
        attempts = 0
        auth = self.spec.auth
        if auth.kind is AuthKind.QUERY and origin_of(url) == self.spec.origin():
            params = {**params, auth.param: auth.secret}
        target = httpx.URL(url).copy_merge_params(params)
        shown = self._shown(target)

        async def attempt() -> tuple[Any, bytes, httpx.Headers]:
            nonlocal attempts
            attempts += 1
            await self._limiter.wait()
            try:
                # merged into the URL: httpx's params= would replace a next-link's own query
                response = await self._http.get(
                    target,
                    headers=self._headers(url),
                    timeout=self.spec.timeout_s,
                )
            except httpx.TimeoutException as exc:
                raise RetryableHttpError(f"{self.name}: timed out on {shown}") from exc
            except httpx.TransportError as exc:
                raise RetryableHttpError(f"{self.name}: {type(exc).__name__} on {shown}") from exc
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableHttpError(
                    f"{self.name}: HTTP {response.status_code} on {shown}",
                    retry_after_seconds(response.headers.get("retry-after")),
                )
            if response.status_code >= 400:
                said = response.text[:200]
                if auth.secret:
                    said = said.replace(auth.secret, REDACTED)  # a vendor echoing the key
                raise PermanentError(
                    f"{self.name}: HTTP {response.status_code} on {shown}: "
                    f"{said} — check the source's URL, auth and parameters"
                )
            try:
                return orjson.loads(response.content), response.content, response.headers
            except orjson.JSONDecodeError as exc:
                raise RetryableHttpError(
                    f"{self.name}: malformed JSON page from {shown} ({exc.msg})"
                ) from exc

        policy = RetryPolicy(max_attempts=self.spec.max_attempts, base_delay=0.2, max_delay=10)
        body, content, headers = await retry(attempt, policy, what=f"GET {shown}")
        self.retries += attempts - 1
        return body, content, headers, attempts

    def _records(self, body: Any, url: str) -> list[dict[str, Any]]:
        found = body
        for part in (self.spec.records_path or "").split("."):
            if part:
                found = found.get(part) if isinstance(found, dict) else None
        if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
            shown = self._shown(url)
            raise PermanentError(
                f"{self.name}: {shown} did not return a list of objects at "
                f"{self.spec.records_path or 'the top level'}; check records_path"
            )
        return found

    def _request(self, lower_bound: str | None, index: int) -> Request:
        """The `index`-th request (0-based) where it is known in advance; the first otherwise."""
        spec, paging = self.spec, self.spec.pagination
        params = dict(spec.params)
        if spec.incremental is not None and lower_bound is not None:
            params[spec.incremental.param] = lower_bound
        if paging.kind is not PaginationKind.NONE:
            params[paging.size_param] = str(paging.page_size)
        if paging.kind is PaginationKind.PAGE_NUMBER:
            params[paging.page_param] = str(paging.first_page + index)
        elif paging.kind is PaginationKind.OFFSET:
            params[paging.offset_param] = str(index * paging.page_size)
        return Request(spec.base_url.rstrip("/") + spec.path, params)

    async def _fetch(self, request: Request) -> Fetched:
        """One page: its records, the request that follows it (cursor, Link), attempts, and
        the exact cursor values the decoder turned into floats."""
        paging = self.spec.pagination
        body, content, headers, attempts = await self._get(request.url, request.params)
        records = self._records(body, request.url)
        exact: dict[int, str] = {}
        inc = self.spec.incremental
        if inc is not None and any(type(r.get(inc.field)) is float for r in records):
            literals = exact_numbers(content, self.spec.records_path, inc.field)
            exact = {i: v for i, v in enumerate(literals) if v is not None}
        follow = None
        if paging.kind is PaginationKind.CURSOR:
            cursor = body.get(paging.next_cursor_path) if isinstance(body, dict) else None
            if cursor:
                follow = Request(request.url, {**request.params, paging.cursor_param: str(cursor)})
        elif paging.kind is PaginationKind.LINK_HEADER:
            link = httpx.Response(200, headers=headers).links.get("next", {}).get("url")
            if link:
                follow = Request(link, {})
        return Fetched(records, follow, attempts, exact)

    async def pages(self, lower_bound: str | None) -> AsyncIterator[Page]:
        """Every page, in order; the incremental lower bound (inclusive) is sent as a param.

        The next page is fetched while the caller lands this one. Page-number and offset
        paging keep `concurrency` pages in flight (their URLs are known in advance) and drop
        the ones past a short page; cursor and Link paging learn the next URL from each answer.
        """
        paging = self.spec.pagination
        speculative = paging.kind in (PaginationKind.PAGE_NUMBER, PaginationKind.OFFSET)
        depth = self.spec.concurrency if speculative else 1
        inflight: deque[asyncio.Task[Fetched]] = deque()
        for index in range(depth):
            inflight.append(asyncio.create_task(self._fetch(self._request(lower_bound, index))))
        number = 1
        try:
            while inflight:
                records, follow, attempts, exact = await inflight.popleft()
                last = paging.kind is PaginationKind.NONE
                if speculative:
                    last = len(records) < paging.page_size
                    if not last:
                        inflight.append(
                            asyncio.create_task(
                                self._fetch(self._request(lower_bound, number + depth - 1))
                            )
                        )
                elif follow is not None:
                    inflight.append(asyncio.create_task(self._fetch(follow)))
                yield Page(number, records, attempts, exact)
                number += 1
                if last:
                    return
        finally:
            for task in inflight:
                task.cancel()
            for task in inflight:
                with contextlib.suppress(asyncio.CancelledError, TributaryError):
                    await task


@dataclass(frozen=True, slots=True)
class Request:
    """A page request."""

    url: str
    params: dict[str, str]


class Fetched(NamedTuple):
    """One fetched page before numbering."""

    records: list[dict[str, Any]]
    follow: Request | None
    attempts: int
    exact: dict[int, str]
