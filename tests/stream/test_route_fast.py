"""The router's fast path (only the envelope fields routing needs decoded, the line made from
the record's own bytes) answers exactly what the slow path, which decodes the whole record,
answers: on generated envelopes signed, unsigned, tampered with, with odd field types, empty
fields, unknown datasets, other versions and trailing whitespace; and the byte-reading
signature check agrees with `verify_envelope_any`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import DATASETS_CONFIG
from tributary.dataset import DatasetRegistry
from tributary.envelope import EnvelopeVerifier, sign_envelope, verify_envelope_any
from tributary_stream.route import Router, UnsignedEnvelopes
from tributary_stream.stream import Record

KEYS = (b"route-fast-signing-key-0123456789abcd", b"route-fast-older-key-0123456789abcdef")
SHARD = "shardId-000000000003"
REGISTRY = DatasetRegistry.from_file(DATASETS_CONFIG)

texts = st.text(max_size=6)
values: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), texts
)
field_values = st.one_of(texts, st.sampled_from(["e1", "api:acme", "2026-01-01T00:00:00Z"]), values)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """An envelope-like record: most fields right, any of them possibly off."""
    obj: dict[str, Any] = {
        "v": draw(st.sampled_from([1, 1, 1, 2, 1.0, True, "1"])),
        "dataset": draw(st.sampled_from(["events", "posts", "nope", "", 7])),
        "id": draw(field_values),
        "source": draw(field_values),
        "received_at": draw(field_values),
        "data": draw(st.one_of(st.dictionaries(texts, values, max_size=3), values)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(obj)), max_size=2)):
        obj.pop(name, None)
    line = orjson.dumps(obj) if draw(st.booleans()) else orjson.dumps([1, 2])
    how = draw(st.sampled_from(["signed", "signed", "older key", "unsigned", "tampered", "bad"]))
    if how == "signed":
        data = sign_envelope(line, KEYS[0])
    elif how == "older key":
        data = sign_envelope(line, KEYS[1])
    elif how == "tampered":
        signed = bytearray(sign_envelope(line, KEYS[0]))
        signed[draw(st.integers(0, len(signed) - 1))] ^= 1
        data = bytes(signed)
    elif how == "bad":
        data = draw(st.sampled_from([b"", b"{", b"not json", b'{"v":1}', line[:-1]]))
    else:
        data = line
    return data + draw(st.sampled_from([b"", b"", b" ", b"\n", b"\t\r\n"]))


def _record(data: bytes, n: int) -> Record:
    arrival = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC) + timedelta(milliseconds=n % 3)
    return Record(str(1000 + n), 0, "pk", data, arrival)


@pytest.mark.parametrize("unsigned", list(UnsignedEnvelopes))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(batch=st.lists(records(), min_size=1, max_size=6))
def test_the_fast_path_answers_what_the_slow_path_answers(
    unsigned: UnsignedEnvelopes, batch: list[bytes]
) -> None:
    fast = Router(REGISTRY, "kinesis:s", "events", signing_key=KEYS, unsigned=unsigned)
    slow = Router(REGISTRY, "kinesis:s", "events", signing_key=KEYS, unsigned=unsigned)
    warm = sign_envelope(  # the fast path's target cache holds events already
        orjson.dumps(
            {"v": 1, "dataset": "events", "id": "w", "source": "s", "received_at": "t", "data": 1}
        ),
        KEYS[0],
    )
    fast.route(SHARD, _record(warm, 0))
    for n, data in enumerate(batch):
        record = _record(data, n)
        assert fast.route(SHARD, record) == slow._route(SHARD, record), data


@settings(max_examples=300, deadline=None)
@given(data=records())
def test_the_signature_read_on_the_bytes_agrees_with_verify_envelope_any(data: bytes) -> None:
    verifier = EnvelopeVerifier(KEYS)
    end = verifier.signed_end(data)
    expected = verify_envelope_any(data, KEYS)
    assert verifier.verify(data) == expected
    assert (end > 0) == (expected is not None)
    if expected is not None:
        assert data[:end] + b"}" == expected


def test_a_signed_api_envelope_takes_the_fast_path_and_lands_its_own_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = Router(REGISTRY, "kinesis:s", "events", signing_key=KEYS)
    line = orjson.dumps(
        {
            "v": 1,
            "dataset": "events",
            "id": "42",
            "source": "api:acme",
            "received_at": "2020-01-01T00:00:00.000Z",
            "data": {"type": "signup"},
        }
    )
    arrival = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    first = router.route(SHARD, Record("1", 0, "pk", sign_envelope(line, KEYS[0]), arrival))

    def whole_record_decoded(_: bytes) -> object:
        raise AssertionError("the slow path decoded the whole record")

    monkeypatch.setattr(orjson, "loads", whole_record_decoded)  # the slow path's decoder
    target, out = router.route(SHARD, Record("2", 0, "pk", sign_envelope(line, KEYS[0]), arrival))
    assert (target, out) == first
    assert out == line[:-1] + b',"arrived_at":"2026-03-04T05:06:07.890Z"}'
