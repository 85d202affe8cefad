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
