from __future__ import annotations

import orjson
import pytest

from tributary.envelope import (
    SIGNATURE_OVERHEAD,
    BadEnvelopeError,
    Envelope,
    EnvelopeVerifier,
    derived_id,
    sign_envelope,
    verify_envelope,
    verify_envelope_any,
)


def test_roundtrip_keeps_data_untouched() -> None:
    data = {"nested": {"x": [1, 2.5, None, "ü"]}, "big": 2**62}
    env = Envelope("posts", "1", "api:k", "2026-01-01T00:00:00.000Z", data)
    assert Envelope.from_json(env.to_json()) == env
    assert orjson.loads(env.to_json())["v"] == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"nope", "not JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"v":2}', "unsupported envelope version 2"),
        (b'{"v":1,"dataset":"d","id":"","source":"s","received_at":"t","data":{}}', "'id'"),
        (b'{"v":1,"dataset":"d","id":"i","source":"s","received_at":"t"}', "'data' is missing"),
    ],
)
def test_bad_envelopes_say_why(line: bytes, message: str) -> None:
    with pytest.raises(BadEnvelopeError, match=message):
        Envelope.from_json(line)


def test_derived_ids_are_deterministic_and_scoped() -> None:
    assert derived_id("k/posts", "req", 0) == derived_id("k/posts", "req", 0)
    assert (
        len(
            {
                derived_id("k/posts", "req", 0),
                derived_id("k/posts", "req", 1),
                derived_id("k/events", "req", 0),
                derived_id("j/posts", "req", 0),
            }
        )
        == 4
    )


KEY = b"k" * 32


def test_signed_envelope_verifies_and_strips_the_signature() -> None:
    line = Envelope("posts", "1", "api:k", "2026-01-01T00:00:00.000Z", {"a": [1, {}]}).to_json()
    signed = sign_envelope(line, KEY)
    assert len(signed) == len(line) + SIGNATURE_OVERHEAD
    assert orjson.loads(signed)["sig"]
    assert verify_envelope(signed, KEY) == line
    assert verify_envelope(signed + b"\n", KEY) == line


def test_forged_or_altered_envelopes_do_not_verify() -> None:
    line = Envelope("posts", "1", "api:k", "2026-01-01T00:00:00.000Z", {"a": 1}).to_json()
    signed = sign_envelope(line, KEY)
    assert verify_envelope(line, KEY) is None  # unsigned
    assert verify_envelope(sign_envelope(line, b"x" * 32), KEY) is None  # another key
    assert verify_envelope(signed.replace(b'"id":"1"', b'"id":"2"'), KEY) is None
    assert (
        verify_envelope(orjson.dumps(orjson.loads(signed), option=orjson.OPT_INDENT_2), KEY) is None
    )
    assert verify_envelope(b"", KEY) is None
    assert verify_envelope(b'{"sig":"' + b"0" * 64 + b'"}', KEY) is None


@pytest.mark.parametrize("key_length", [1, 32, 63, 64, 65, 200])
def test_verifier_answers_as_verify_envelope_any(key_length: int) -> None:
    """The consumer's precomputed-HMAC verifier agrees with `hmac` for keys shorter, as long
    as and longer than SHA-256's block, with several keys (a rotation), on good and bad input."""
    key = bytes(range(256))[:key_length] or b"k"
    other = b"o" * 40
    line = b'{"v":1,"dataset":"posts","id":"1","source":"api","received_at":"t","data":{}}'
    cases = [
        sign_envelope(line, key),
        sign_envelope(line, other),
        sign_envelope(line, key) + b"\n",
        sign_envelope(line, key).replace(b'"id":"1"', b'"id":"2"'),
        sign_envelope(line, b"x" * 32),
        line,
        b"",
        b'{"sig":"' + b"0" * 64 + b'"}',
        sign_envelope(line, key)[:-2] + b"G" + b'"}',
    ]
    for keys in ([key], [other, key], [], [b"x" * 32]):
        verifier = EnvelopeVerifier(keys)
        assert [verifier.verify(c) for c in cases] == [verify_envelope_any(c, keys) for c in cases]
    assert EnvelopeVerifier([key]).verify(cases[0]) == line
