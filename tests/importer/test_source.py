"""The sources file: the documented example loads; unset variables and secrets are handled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tributary_importer.source
from tributary.errors import ConfigError
from tributary_importer.fetch import redact_url
from tributary_importer.source import load_sources


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    doc = tributary_importer.source.__doc__ or ""
    [example] = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    path = tmp_path / "sources.yaml"
    path.write_text(example)
    sources = load_sources(path, {"VENDOR_API_KEY": "k"})
    assert set(sources) == {"posts", "items"}
    assert sources["posts"].ready().auth.secret == "k"
    assert sources["items"].ready().params == {"_page": "1"}


def test_an_unset_variable_without_a_default_stops_only_its_source(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"
        "  a:\n    base_url: ${VENDOR_URL}\n    path: /a\n    dataset: a\n"
        "  b:\n    base_url: ${OTHER_URL:-http://b}\n    path: /b\n    dataset: b\n"
    )
    for env in ({}, {"VENDOR_URL": "", "OTHER_URL": ""}):
        sources = load_sources(path, env)
        with pytest.raises(ConfigError, match=r"source 'a' needs environment variable\(s\) VEN"):
            sources["a"].ready()
        assert sources["b"].ready().base_url == "http://b"  # empty counts as unset: the default
    assert load_sources(path, {"VENDOR_URL": "http://a"})["a"].ready().base_url == "http://a"


def test_urls_are_redacted_for_logs() -> None:
    url = "https://user:pass@vendor.example:8443/v1/items?page=2&token=abc&limit=50&key="
    assert redact_url(url, {"page", "limit"}) == (
        "https://vendor.example:8443/v1/items?page=2&token=***&limit=50&key=***"
    )
    assert redact_url("http://[::1]:80/x?a=1") == "http://[::1]:80/x?a=***"
