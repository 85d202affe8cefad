"""Envelopes are trusted only from the API: signed ones pass through, anything that merely looks
like an envelope is a bare record (or quarantined, by setting) with the arrival time observed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.conftest import DATASETS_CONFIG
from tributary.dataset import DatasetRegistry
from tributary.envelope import sign_envelope
from tributary.layout import Zone
from tributary_stream.route import Router, UnsignedEnvelopes
from tributary_stream.stream import Record

KEY = b"route-test-signing-key-0123456789abc"
ARRIVAL = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
SHARD = "shardId-000000000001"


def api_envelope(record_id: str = "42") -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "dataset": "events",
            "id": record_id,
            "source": "api:acme",
            "received_at": "2020-01-01T00:00:00.000Z",
            "data": {"type": "signup"},
        }
    )


def record(data: bytes) -> Record:
    return Record("1000", 0, "pk", data, ARRIVAL)


def router(registry: DatasetRegistry, **options: object) -> Router:
    return Router(registry, "kinesis:s", "events", signing_key=KEY, **options)  # type: ignore[arg-type]


def test_a_signed_api_envelope_passes_through_without_its_signature(
    registry: DatasetRegistry,
) -> None:
    line = api_envelope()
    target, out = router(registry).route(SHARD, record(sign_envelope(line, KEY)))
    assert (target.zone, target.dataset) == (Zone.RAW, "events")
    assert out == line[:-1] + b',"arrived_at":"2026-03-04T05:06:07.890Z"}'
    landed = orjson.loads(out)
    assert landed["received_at"] == "2020-01-01T00:00:00.000Z"  # the API's, trusted


@pytest.mark.parametrize(
    "forged",
    [
        api_envelope(),  # unsigned
        sign_envelope(api_envelope(), b"someone-else-key-0123456789abcdef"),
        sign_envelope(api_envelope("7"), KEY).replace(b'"id":"7"', b'"id":"42"'),
    ],
    ids=["unsigned", "other key", "altered"],
)
def test_a_forged_envelope_is_a_bare_record_with_the_observed_arrival(
    registry: DatasetRegistry, forged: bytes
) -> None:
    target, out = router(registry).route(SHARD, record(forged))
    line = orjson.loads(out)
    assert (target.zone, target.dataset) == (Zone.RAW, "events")
    assert line["source"] == "kinesis:s"
    assert line["received_at"] == "2026-03-04T05:06:07.890Z"
    # events' id field is `id`, but the forger's `id` is not taken: it cannot suppress record 42
    assert line["id"] == f"{SHARD}-1000"
    assert line["data"] == orjson.loads(forged)


def test_unsigned_envelopes_can_be_quarantined_instead(registry: DatasetRegistry) -> None:
    target, out = router(registry, unsigned=UnsignedEnvelopes.QUARANTINE).route(
        SHARD, record(api_envelope())
    )
    line = orjson.loads(out)
    assert (target.zone, target.dataset) == (Zone.QUARANTINE, "events")
    assert "not signed by the API" in line["errors"][0]["message"]
    assert line["received_at"] == "2026-03-04T05:06:07.890Z"


def test_without_a_key_no_envelope_is_trusted(registry: DatasetRegistry) -> None:
    _, out = Router(registry, "kinesis:s", "events").route(
        SHARD, record(sign_envelope(api_envelope(), KEY))
    )
    assert orjson.loads(out)["source"] == "kinesis:s"


def test_a_bare_record_still_uses_the_dataset_id_field(registry: DatasetRegistry) -> None:
    _, out = router(registry).route(SHARD, record(b'{"type": "x", "id": "own"}'))
    assert orjson.loads(out)["id"] == "own"


def test_settings_carry_the_key_and_the_unsigned_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from tributary_stream.settings import StreamSettings

    monkeypatch.setenv("ENVELOPE_SIGNING_KEY", KEY.decode())
    monkeypatch.setenv("STREAM_UNSIGNED_ENVELOPES", "quarantine")
    settings = StreamSettings()
    assert settings.signing_key() == KEY
    assert settings.unsigned_envelopes is UnsignedEnvelopes.QUARANTINE
    assert KEY.decode() not in repr(settings)
    monkeypatch.delenv("ENVELOPE_SIGNING_KEY")
    assert StreamSettings().signing_key() is None


NEW_KEY = b"route-test-the-next-signing-key-0123456789"


def test_during_a_rotation_an_envelope_signed_with_any_configured_key_is_trusted(
    registry: DatasetRegistry,
) -> None:
    """ENVELOPE_SIGNING_KEYS: the consumer verifies with every key (the new one and the old),
    so the API can switch keys without a single record landing as a bare record."""
    rotating = Router(registry, "kinesis:s", "events", signing_key=(NEW_KEY, KEY))
    line = api_envelope()
    for key in (KEY, NEW_KEY):
        _, out = rotating.route(SHARD, record(sign_envelope(line, key)))
        assert orjson.loads(out)["id"] == "42", key  # trusted: the API's id kept
    _, out = rotating.route(SHARD, record(sign_envelope(line, b"x" * 40)))
    assert orjson.loads(out)["id"] != "42"  # any other key: a bare record


def test_settings_read_the_rotation_keys_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from tributary_api.settings import ApiSettings
    from tributary_stream.settings import StreamSettings

    monkeypatch.setenv("ENVELOPE_SIGNING_KEYS", f"{NEW_KEY.decode()}, {KEY.decode()}")
    monkeypatch.setenv("ENVELOPE_SIGNING_KEY", KEY.decode())
    assert StreamSettings().verify_keys() == (NEW_KEY, KEY)
    api = ApiSettings.model_validate({"API_SINK": "kinesis"})
    assert api.signing_key() == NEW_KEY  # the API signs with the first
    assert NEW_KEY.decode() not in repr(api)


def test_the_consumer_checks_the_key_length_as_the_api_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from tributary_stream.settings import StreamSettings

    monkeypatch.setenv("ENVELOPE_SIGNING_KEY", "too-short")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        StreamSettings()
    monkeypatch.setenv("ENVELOPE_SIGNING_KEY", KEY.decode())
    monkeypatch.setenv("ENVELOPE_SIGNING_KEYS", f"{NEW_KEY.decode()},short")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        StreamSettings()


def test_the_consumer_refuses_to_start_without_a_key_unless_opted_out(tmp_path: Path) -> None:
    """`python -m tributary_stream` with no signing key exits 2 naming the variable, before it
    touches AWS; STREAM_ALLOW_NO_SIGNING_KEY=true is the explicit way to run without one."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ENVELOPE_SIGNING_KEY", "ENVELOPE_SIGNING_KEYS")
    }
    # Nothing listens there: a consumer that started anyway would fail or retry, never exit 2.
    env.update(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "STREAM_NAME": "s",
            "LAKE_BUCKET": "b",
            "LEASE_TABLE": "t",
            "DATASETS_CONFIG": str(DATASETS_CONFIG),
        }
    )
    command = [sys.executable, "-m", "tributary_stream"]
    try:
        refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the consumer started without a signing key")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "ENVELOPE_SIGNING_KEY" in refused.stderr + refused.stdout
    env["STREAM_ALLOW_NO_SIGNING_KEY"] = "true"
    started = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        code = started.wait(timeout=5)
    except subprocess.TimeoutExpired:
        code = None  # still running: past the check, retrying the unreachable AWS endpoint
    finally:
        started.kill()
        _, stderr = started.communicate()
    assert code != 2, stderr[-2000:]


@pytest.mark.parametrize("depth", [300, 1000, 1100, 5000])
@pytest.mark.parametrize("shape", ["bare", "envelope"])
def test_a_deeply_nested_record_is_quarantined_not_raised(
    registry: DatasetRegistry, depth: int, shape: str
) -> None:
    """`route` never raises: a record nested past a decoder's or encoder's depth limit used to
    raise (msgspec's RecursionError on the fast path past ~1000 levels, orjson's encoder past
    254 on the slow path), and the shard restarted from the same checkpoint forever."""
    nested = b"[" * depth + b"]" * depth
    data = (
        b'{"type":"signup","x":' + nested + b"}"
        if shape == "bare"
        else b'{"v":1,"dataset":"events","id":"1","source":"api:a",'
        b'"received_at":"2020-01-01T00:00:00.000Z","data":{"x":' + nested + b"}}"
    )
    warm = router(registry)
    warm.route(SHARD, record(sign_envelope(api_envelope(), KEY)))  # the target cache warm
    for routing in (router(registry), warm):
        target, line = routing.route(SHARD, record(data))
        assert target.zone is Zone.QUARANTINE
        reason = orjson.loads(line)["errors"][0]["message"]
        assert "nested" in reason or "not JSON" in reason, reason
