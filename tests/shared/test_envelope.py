from __future__ import annotations

import orjson
import pytest

from tributary.envelope import BadEnvelopeError, Envelope, derived_id


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
