"""Credentials stay with the source: a query-parameter key is a bare ${VAR} like any secret,
only the paging kind's own parameters and the source's own path appear in logs and errors,
and a next-page link to another origin is followed without credentials."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tributary.errors import ConfigError, PermanentError
from tributary_importer.fetch import SourceClient, redact_http_logs, redact_url
from tributary_importer.source import AuthKind, SourceSpec, load_sources

KEY = "s3cr3t-vendor-key"


def spec(**kw: Any) -> SourceSpec:
    return SourceSpec.model_validate(
        {"base_url": "https://vendor.test/api", "path": "/items", "dataset": "items", **kw}
    )


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n  s:\n    base_url: http://x\n    path: /p\n    dataset: items\n" + body
    )
    return path


@pytest.mark.parametrize(
    "params",
    ["{api_key: '${VENDOR_API_KEY:-dev}'}", "{token: literal}", "{access_token: '${T}'}"],
)
def test_a_credential_in_params_is_refused_at_load(tmp_path: Path, params: str) -> None:
    with pytest.raises(ConfigError, match=r"looks like a credential; send it as auth: \{kind: q"):
        load_sources(write(tmp_path, f"    params: {params}\n"), {"VENDOR_API_KEY": "k"})


@pytest.mark.parametrize("secret", ["'${VENDOR_API_KEY:-dev}'", "dev-key"])
def test_a_query_key_is_a_bare_variable(tmp_path: Path, secret: str) -> None:
    body = f"    auth: {{kind: query, param: api_key, secret: {secret}}}\n"
    with pytest.raises(ConfigError, match="must be a bare"):
        load_sources(write(tmp_path, body), {"VENDOR_API_KEY": "k"})
    good = "    auth: {kind: query, param: api_key, secret: '${VENDOR_API_KEY}'}\n"
    loaded = load_sources(write(tmp_path, good), {"VENDOR_API_KEY": "k"})["s"].ready()
    assert (loaded.auth.kind, loaded.auth.secret) == (AuthKind.QUERY, "k")


def test_only_the_paging_kinds_own_parameters_are_loggable() -> None:
    cursor = spec(pagination={"kind": "cursor", "size_param": "limit"})
    assert cursor.loggable_params() == {"limit"}  # not page, offset, or the cursor token
    link = spec(pagination={"kind": "link_header", "size_param": "limit"})
    assert link.loggable_params() == {"limit"}
    named = spec(pagination={"kind": "link_header", "size_param": "limit", "page_param": "p"})
    assert named.loggable_params() == {"limit", "p"}
    pages = spec(pagination={"kind": "page_number", "page_param": "p", "size_param": "n"})
    assert pages.loggable_params() == {"p", "n"}
    offsets = spec(pagination={"kind": "offset", "offset_param": "o", "size_param": "n"})
    assert offsets.loggable_params() == {"o", "n"}


def test_a_path_other_than_the_sources_is_redacted() -> None:
    paths = spec().loggable_paths()
    assert paths == {"/api/items"}
    assert redact_url("https://vendor.test/api/items?p=2", {"p"}, paths) == (
        "https://vendor.test/api/items?p=2"
    )
    assert redact_url("https://vendor.test/next/tok-abc/2?p=2", {"p"}, paths) == (
        "https://vendor.test/***?p=2"
    )


def sent(request: httpx.Request) -> str:
    """Everything a request carried that may hold the key (header values in clear)."""
    headers = " ".join(f"{k}={v}" for k, v in request.headers.items())
    authorization = request.headers.get("authorization", "")
    if authorization.startswith("Basic "):
        authorization = base64.b64decode(authorization[6:]).decode()
    return f"{request.url} {headers} {authorization}"


class Vendor:
    """Page 1 links to page 2 on `next_origin` under a path that carries a token; page 2 is a
    403 that echoes the key."""

    def __init__(self, next_origin: str) -> None:
        self.next_origin = next_origin
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/items":
            link = f'<{self.next_origin}/next/tok-path-token/2>; rel="next"'
            return httpx.Response(200, json=[{"id": 1}], headers={"Link": link})
        return httpx.Response(403, text=f"bad key {KEY} for this page")


async def pages(vendor: Vendor, **auth: Any) -> None:
    source = spec(
        auth={"secret": KEY, **auth}, pagination={"kind": "link_header", "size_param": "n"}
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as http:
        async for _ in SourceClient("s", source, http).pages(None):
            pass


@pytest.mark.parametrize(
    "auth",
    [{"kind": "bearer"}, {"kind": "header", "header": "X-Key"}, {"kind": "query"}],
    ids=["bearer", "header", "query"],
)
async def test_a_link_to_another_origin_is_followed_without_credentials(
    auth: dict[str, str],
) -> None:
    vendor = Vendor("https://cdn.elsewhere.test")
    with pytest.raises(PermanentError):
        await pages(vendor, **auth)
    first, second = vendor.requests
    assert KEY in sent(first)  # the source's own origin gets the key
    assert KEY not in sent(second)
    assert "authorization" not in second.headers


async def test_same_origin_links_keep_credentials_and_errors_hide_paths_and_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vendor = Vendor("https://vendor.test:443")
    caplog.set_level(logging.DEBUG)
    source = spec(pagination={"kind": "link_header"})
    with redact_http_logs([source]), pytest.raises(PermanentError) as failure:
        await pages(vendor, kind="query", param="api_key")
    assert vendor.requests[1].url.params["api_key"] == KEY  # same origin (explicit :443)
    message = str(failure.value)
    assert "HTTP 403 on https://vendor.test/***?api_key=***" in message
    assert "bad key *** for this page" in message
    for text in (message, caplog.text):
        assert "tok-path-token" not in text
        assert KEY not in text


CLIENT_SECRET = "oauth-client-s3cr3t"
TOKEN = "at-live-token-value"


class OAuthVendor:
    """A token endpoint on its own origin; page 1 links to page 2 on another origin; page 2 on
    the own origin is a 403 that echoes the token and the client secret."""

    def __init__(self, next_origin: str) -> None:
        self.next_origin = next_origin
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "auth.vendor.test":
            assert CLIENT_SECRET in request.content.decode()
            return httpx.Response(200, json={"access_token": TOKEN, "expires_in": 3600})
        if "page" not in request.url.params:
            link = f'<{self.next_origin}/api/items?page=2>; rel="next"'
            return httpx.Response(200, json=[{"id": 1}], headers={"Link": link})
        return httpx.Response(403, text=f"token {TOKEN} (client secret {CLIENT_SECRET}) refused")


async def oauth_pages(vendor: OAuthVendor) -> None:
    source = spec(
        auth={
            "kind": "oauth2_client_credentials",
            "token_url": "https://auth.vendor.test/token",
            "client_id": "tributary",
            "secret": CLIENT_SECRET,
        },
        pagination={"kind": "link_header", "size_param": "n"},
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as http:
        async for _ in SourceClient("s", source, http).pages(None):
            pass


@pytest.mark.parametrize("next_origin", ["https://vendor.test", "https://cdn.elsewhere.test"])
async def test_oauth2_secret_and_token_stay_with_their_origins_and_out_of_logs(
    caplog: pytest.LogCaptureFixture, next_origin: str
) -> None:
    vendor = OAuthVendor(next_origin)
    caplog.set_level(logging.DEBUG)
    with redact_http_logs([spec()]), pytest.raises(PermanentError) as failure:
        await oauth_pages(vendor)
    token_request, first, second = vendor.requests
    assert token_request.url.host == "auth.vendor.test"  # the secret went there only
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    for request in (first, second):
        assert CLIENT_SECRET not in sent(request)
    if next_origin == "https://cdn.elsewhere.test":
        assert "authorization" not in second.headers  # no token to another origin
    else:
        assert second.headers["authorization"] == f"Bearer {TOKEN}"
    message = str(failure.value)
    assert "HTTP 403" in message
    for text in (message, caplog.text):
        assert TOKEN not in text
        assert CLIENT_SECRET not in text


def test_an_oauth2_client_secret_is_a_bare_variable(tmp_path: Path) -> None:
    body = (
        "    auth: {kind: oauth2_client_credentials, token_url: http://x/token, client_id: c,\n"
        "           secret: '${OAUTH_SECRET:-dev}'}\n"
    )
    with pytest.raises(ConfigError, match="must be a bare"):
        load_sources(write(tmp_path, body), {"OAUTH_SECRET": "k"})
    with pytest.raises(ConfigError, match="token_url and client_id"):
        load_sources(
            write(tmp_path, "    auth: {kind: oauth2_client_credentials, secret: '${S}'}\n"),
            {"S": "k"},
        )


@pytest.mark.parametrize("where", ["page", "token endpoint"])
async def test_a_secret_straddling_the_cut_of_an_error_body_does_not_leak_a_prefix(
    where: str,
) -> None:
    def vendor(request: httpx.Request) -> httpx.Response:
        padded = "x" * 190 + CLIENT_SECRET + " and more text after it"
        if request.url.host == "auth.vendor.test" and where == "token endpoint":
            return httpx.Response(401, text=padded)
        if request.url.host == "auth.vendor.test":
            return httpx.Response(200, json={"access_token": TOKEN, "expires_in": 3600})
        return httpx.Response(403, text=padded.replace(CLIENT_SECRET, TOKEN + CLIENT_SECRET))

    source = spec(
        auth={
            "kind": "oauth2_client_credentials",
            "token_url": "https://auth.vendor.test/token",
            "client_id": "tributary",
            "secret": CLIENT_SECRET,
        }
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as http:
        with pytest.raises(PermanentError) as failure:
            async for _ in SourceClient("s", source, http).pages(None):
                pass
    assert CLIENT_SECRET[:8] not in str(failure.value)
    assert TOKEN[:8] not in str(failure.value)
