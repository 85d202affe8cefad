"""OAuth2 client credentials (RFC 6749 §4.4): a bearer token from the token endpoint, cached
until `expiry_margin_s` before it expires, fetched again when the API answers 401.

The client secret goes to `token_url` only (in the form body, dlt's default); the token to the
source's own origin only. Neither appears in a log line or an error message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import orjson

from tributary.errors import PermanentError, TransientError
from tributary_importer.retry_after import retry_after_seconds
from tributary_importer.source import AuthSpec

REDACTED = "***"


class TokenError(TransientError):
    """The token endpoint failed in a way worth another attempt (5xx, 429, timeout)."""

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # read by the retry helper


class OAuth2ClientCredentials:
    """The current access token of one source, fetched on first use and before expiry."""

    def __init__(
        self,
        name: str,
        auth: AuthSpec,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._auth = auth
        self._http = http
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()  # one fetch at a time: requests in flight share it
        self.fetched = 0  # tokens obtained (for tests and the run summary)

    def serves(self, auth: AuthSpec) -> bool:
        """Whether a source with `auth` may share these credentials (and their token)."""
        mine = self._auth
        same = (mine.token_url, mine.client_id, mine.scopes, mine.secret)
        return same == (auth.token_url, auth.client_id, auth.scopes, auth.secret)

    def secrets(self) -> tuple[str, ...]:
        """Values to redact from anything shown: the client secret and the current token."""
        return tuple(s for s in (self._auth.secret, self._token) if s)

    def invalidate(self, token: str) -> None:
        """The API refused `token` (401): the next `token()` fetches a new one."""
        if self._token == token:
            self._token = None

    async def token(self) -> str:
        """A token valid for at least `expiry_margin_s` more."""
        if self._token is None or self._clock() >= self._expires_at:
            async with self._lock:
                if self._token is None or self._clock() >= self._expires_at:  # still?
                    await self._fetch()
        assert self._token is not None
        return self._token

    async def _fetch(self) -> None:
        auth = self._auth
        form = {
            "grant_type": "client_credentials",
            "client_id": auth.client_id,
            "client_secret": auth.secret,
        }
        if auth.scopes:
            form["scope"] = " ".join(auth.scopes)

        # one attempt: a transient failure is retried with the request that needed the token
        started = self._clock()
        try:
            response = await self._http.post(auth.token_url, data=form, timeout=30)
        except httpx.TransportError as exc:
            raise TokenError(f"{self._name}: token endpoint: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TokenError(
                f"{self._name}: token endpoint HTTP {response.status_code}",
                retry_after_seconds(response.headers.get("retry-after")),
            )
        said = response.text.replace(auth.secret, REDACTED)[:200]  # redact, then cut
        try:
            body = orjson.loads(response.content) if response.status_code == 200 else None
        except orjson.JSONDecodeError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PermanentError(
                f"{self._name}: the token endpoint answered HTTP {response.status_code} without "
                f"an access_token: {said} — check auth.client_id, the secret and auth.token_url"
            )
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and expires_in > 0
            else auth.default_expires_in_s
        )
        self._token = token
        # from the request's start: the token was issued no earlier than that
        self._expires_at = started + max(0.0, lifetime - auth.expiry_margin_s)
        self.fetched += 1
