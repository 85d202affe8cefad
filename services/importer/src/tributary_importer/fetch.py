"""Fetching a source page by page: HTTP with retries, a rate limit, and the pagination kinds.

One page is in memory at a time. 429, 5xx, timeouts and malformed bodies are retried with
jittered backoff, honouring `Retry-After` (seconds or HTTP-date; `0` still pauses, it never
spins); other 4xx fail the run at once with the server's words. A source's `response_actions`
may declare a status empty (`ignore`), transient (`retry`) or failed; under OAuth2 a 401 fetches
a new token and tries once more (`auth`). Paginators that read the next request from the answer
live in `paginators`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import orjson

from tributary.errors import PermanentError, TransientError, TributaryError
from tributary.retry import RetryPolicy, retry
from tributary_importer import paginators
from tributary_importer.auth import OAuth2ClientCredentials
from tributary_importer.pacing import RateLimiter
from tributary_importer.paginators import PageRequest
from tributary_importer.retry_after import MIN_PAUSE_S as MIN_PAUSE_S  # re-exported
from tributary_importer.retry_after import retry_after_seconds as retry_after_seconds
from tributary_importer.source import AuthKind, PaginationKind, SourceSpec, origin_of
from tributary_importer.source_extra import END_VALUE, START_VALUE, Action

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
    if paths is not None and path not in paths and not any(_fits(path, p) for p in paths):
        path = f"/{REDACTED}"
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _fits(path: str, template: str) -> bool:
    """Whether `path` is a child path `template` (a `*` stands for one segment)."""
    want, got = template.split("/"), path.split("/")
    if "*" not in want or len(want) != len(got):
        return False
    return all(w in ("*", g) for w, g in zip(want, got, strict=True))


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


class SourceClient:
    """Pages of one source, from an httpx client the caller owns (keep-alive, timeouts)."""

    def __init__(self, name: str, spec: SourceSpec, http: httpx.AsyncClient) -> None:
        self.name = name
        self.spec = spec
        self._http = http
        self._limiter = RateLimiter(spec.rate_limit_rps)
        # a POST body with a `query`: GraphQL, whose errors come as HTTP 200 + `errors`
        self._graphql = isinstance(spec.json_body, dict) and "query" in spec.json_body
        self.retries = 0
        self.oauth = (
            OAuth2ClientCredentials(name, spec.auth, http)
            if spec.auth.kind is AuthKind.OAUTH2
            else None
        )
        hook = spec.pagination.hook
        self._hook = paginators.load_hook(hook) if hook is not None else None
        self.ignored = 0  # answers a response action declared empty
        self.parent: SourceClient | None = None  # a child resource's parent (`clients`)

    def _shown(self, url: str | httpx.URL) -> str:
        return redact_url(url, self.spec.loggable_params(), self.spec.loggable_paths())

    async def _auth_headers(self, url: str) -> dict[str, str]:
        """`_headers`, with the OAuth2 bearer token (fetched or cached) for the own origin."""
        if self.oauth is None or origin_of(url) != self.spec.origin():
            return self._headers(url)
        return {"Authorization": f"Bearer {await self.oauth.token()}"}

    def _redact(self, text: str) -> str:
        """`text` without the source's secret or its current OAuth2 token."""
        for secret in self.oauth.secrets() if self.oauth else (self.spec.auth.secret,):
            if secret:
                text = text.replace(secret, REDACTED)
        return text

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

    async def _get(
        self, url: str, params: dict[str, str], json_body: dict[str, Any] | None = None
    ) -> tuple[Any, bytes, httpx.Headers, int]:
        """GET (or the source's method, with `json_body`) with retries; returns the parsed body
        (None when a response action declared the answer empty), its bytes, headers and
        attempts used. A 401 under OAuth2 fetches a new token and tries once more."""
        attempts = 0
        refreshed = False
        auth = self.spec.auth
        if auth.kind is AuthKind.QUERY and origin_of(url) == self.spec.origin():
            params = {**params, auth.param: auth.secret}
        target = httpx.URL(url).copy_merge_params(params)
        shown = self._shown(target)

        async def attempt() -> tuple[Any, bytes, httpx.Headers]:
            nonlocal attempts
            attempts += 1
            nonlocal refreshed
            headers = await self._auth_headers(url)
            try:
                # the request holds its place in the rate limit until it ended (`pacing`)
                async with self._limiter.slot():
                    # merged into the URL: httpx's params= would replace a next-link's own query
                    response = await self._http.request(
                        self.spec.method.value,
                        target,
                        headers=headers,
                        json=json_body,
                        timeout=self.spec.timeout_s,
                    )
            except httpx.TimeoutException as exc:
                raise RetryableHttpError(f"{self.name}: timed out on {shown}") from exc
            except httpx.TransportError as exc:
                raise RetryableHttpError(f"{self.name}: {type(exc).__name__} on {shown}") from exc
            if response.status_code == 401 and self.oauth is not None and not refreshed:
                refreshed = True  # the token was revoked or expired early: one new token
                self.oauth.invalidate(headers.get("Authorization", "")[len("Bearer ") :])
                raise RetryableHttpError(f"{self.name}: HTTP 401 on {shown}, new token")
            for action in self.spec.response_actions:
                if action.status_code != response.status_code:
                    continue  # decode the body only for a status that has an action
                if not action.matches(response.status_code, response.text):
                    continue
                if action.action is Action.IGNORE:
                    self.ignored += 1
                    return None, b"", response.headers
                if action.action is Action.RETRY:
                    raise RetryableHttpError(
                        f"{self.name}: HTTP {response.status_code} on {shown} (retry declared)",
                        retry_after_seconds(response.headers.get("retry-after")),
                    )
                said = self._redact(response.text)[:200]
                raise PermanentError(  # fail: at once, whatever the status (a 5xx, a 200)
                    f"{self.name}: HTTP {response.status_code} on {shown} (fail declared): {said}"
                )
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableHttpError(
                    f"{self.name}: HTTP {response.status_code} on {shown}",
                    retry_after_seconds(response.headers.get("retry-after")),
                )
            if response.status_code >= 400:
                said = self._redact(response.text)[:200]  # a vendor echoing the key: redact, cut
                raise PermanentError(
                    f"{self.name}: HTTP {response.status_code} on {shown}: "
                    f"{said} — check the source's URL, auth and parameters"
                )
            try:
                parsed = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                raise RetryableHttpError(
                    f"{self.name}: malformed JSON page from {shown} ({exc.msg})"
                ) from exc
            if self._graphql and isinstance(parsed, dict) and parsed.get("errors"):
                # GraphQL answers errors with HTTP 200 (partial data, if any, is not a page)
                said = self._redact(orjson.dumps(parsed["errors"]).decode())[:300]
                raise PermanentError(f"{self.name}: GraphQL errors from {shown}: {said}")
            return parsed, response.content, response.headers

        # one more attempt for the token refresh, which is not the vendor failing
        tries = self.spec.max_attempts + (self.oauth is not None)
        policy = RetryPolicy(max_attempts=tries, base_delay=0.2, max_delay=10)
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

    def _request(
        self,
        lower_bound: str | None,
        index: int,
        upper_bound: str | None = None,
        path: str | None = None,
    ) -> Request:
        """The `index`-th request (0-based) where it is known in advance; the first otherwise.
        `upper_bound` (exclusive) goes in `end_param`; `path` replaces the source's (a child's
        path with its parent's fields filled in)."""
        spec, paging = self.spec, self.spec.pagination
        params = dict(spec.params)
        inc = spec.incremental
        if inc is not None and lower_bound is not None and inc.param is not None:
            params[inc.param] = lower_bound
        if inc is not None and upper_bound is not None and inc.end_param is not None:
            params[inc.end_param] = upper_bound
        json_body = _fill(spec.json_body, lower_bound, upper_bound)
        if paging.size_in_query(json_body is not None):
            params[paging.size_param] = str(paging.page_size)
        if paging.kind is PaginationKind.PAGE_NUMBER:
            params[paging.page_param] = str(paging.first_page + index)
        elif paging.kind is PaginationKind.OFFSET:
            params[paging.offset_param] = str(index * paging.page_size)
        url = spec.base_url.rstrip("/") + (path if path is not None else spec.path)
        return Request(url, params, json_body, spec.method.value)

    async def _fetch(self, request: Request) -> Fetched:
        """One page: its records, the request that follows it (cursor, Link), attempts, and
        the exact cursor values the decoder turned into floats."""
        paging = self.spec.pagination
        body, content, headers, attempts = await self._get(
            request.url, request.params, request.json
        )
        if body is None and not content:  # a response action: empty, and nothing follows
            return Fetched([], None, attempts, {})
        records = self._records(body, request.url)
        exact: dict[int, str] = {}
        inc = self.spec.incremental
        if inc is not None and any(type(r.get(inc.field)) is float for r in records):
            literals = exact_numbers(content, self.spec.records_path, inc.field)
            exact = {i: v for i, v in enumerate(literals) if v is not None}
        follow = None
        if paginators.handles(paging):
            follow = paginators.next_request(paging, request, body, headers, self._hook)
        elif paging.kind is PaginationKind.CURSOR:
            cursor = body.get(paging.next_cursor_path) if isinstance(body, dict) else None
            if cursor:
                follow = replace(
                    request, params={**request.params, paging.cursor_param: str(cursor)}
                )
        elif paging.kind is PaginationKind.LINK_HEADER:
            link = httpx.Response(200, headers=headers).links.get("next", {}).get("url")
            if link:
                follow = replace(request, url=link, params={})
        return Fetched(records, follow, attempts, exact)

    async def pages(
        self, lower_bound: str | None, upper_bound: str | None = None, path: str | None = None
    ) -> AsyncIterator[Page]:
        """Every page, in order; the incremental lower bound (inclusive) is sent as a param,
        the upper bound (exclusive) as `end_param`; `path` is a child's filled-in path.

        The next page is fetched while the caller lands this one. Page-number and offset
        paging keep `concurrency` pages in flight (their URLs are known in advance) and drop
        the ones past a short page; cursor and Link paging learn the next URL from each answer.
        """
        paging = self.spec.pagination
        speculative = paging.kind in (PaginationKind.PAGE_NUMBER, PaginationKind.OFFSET)
        depth = self.spec.concurrency if speculative else 1
        inflight: deque[asyncio.Task[Fetched]] = deque()
        for index in range(depth):
            first = self._request(lower_bound, index, upper_bound, path)
            inflight.append(asyncio.create_task(self._fetch(first)))
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
                                self._fetch(
                                    self._request(
                                        lower_bound, number + depth - 1, upper_bound, path
                                    )
                                )
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


Request = PageRequest  # a page request (url, params, and a POST's json body)


def _fill(body: Any, lower: str | None, upper: str | None) -> Any:
    """A copy of the json body template with the run's bounds in place of the placeholders."""
    if isinstance(body, dict):
        return {k: _fill(v, lower, upper) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, lower, upper) for v in body]
    if body == START_VALUE:
        return lower
    if body == END_VALUE:
        return upper
    return body


class Fetched(NamedTuple):
    """One fetched page before numbering."""

    records: list[dict[str, Any]]
    follow: Request | None
    attempts: int
    exact: dict[int, str]
