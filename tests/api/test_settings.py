from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tributary_api.auth import hash_key
from tributary_api.settings import ApiSettings, SinkKind


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "API_KEYS", json.dumps([{"name": "p", "sha256": hash_key("s"), "datasets": ["posts"]}])
    )
    monkeypatch.setenv("API_SINK", "s3")
    monkeypatch.setenv("API_MAX_RECORDS", "100")
    monkeypatch.setenv("LAKE_BUCKET", "my-lake")
    settings = ApiSettings()
    assert settings.sink is SinkKind.S3
    assert settings.max_records == 100
    assert settings.lake_bucket == "my-lake"
    assert settings.keys[0].datasets == ["posts"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_SINK", "kafka"),
        ("API_KEYS", '[{"name": "x", "sha256": "short"}]'),
        ("API_MAX_RECORD_BYTES", str(2 * 1024 * 1024)),
    ],
)
def test_bad_settings_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        ApiSettings()


def test_the_kinesis_sink_needs_the_envelope_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_SINK", "kinesis")
    monkeypatch.delenv("ENVELOPE_SIGNING_KEY", raising=False)
    with pytest.raises(ValidationError, match="API_SINK=kinesis needs ENVELOPE_SIGNING_KEY"):
        ApiSettings()
    monkeypatch.setenv("ENVELOPE_SIGNING_KEY", "too-short")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        ApiSettings()
    monkeypatch.setenv("ENVELOPE_SIGNING_KEY", "k" * 32)
    settings = ApiSettings()
    assert settings.signing_key() == b"k" * 32
    assert "kkkk" not in repr(settings)  # a secret: never in logs or reprs
