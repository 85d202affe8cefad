"""Quarantine lines for records that landed in raw but could not be used downstream (a failing
processor, an item the items table refused), in the consumer's quarantine line format."""

from __future__ import annotations

import base64

import orjson

from tributary.envelope import ENVELOPE_VERSION
from tributary_stream.route import UNROUTED


def failure_line(envelope_line: bytes, reason: str) -> tuple[str, bytes]:
    """The dataset and quarantine line for a raw envelope line that failed with `reason`."""
    try:
        envelope = orjson.loads(envelope_line)
    except orjson.JSONDecodeError:
        envelope = {}
    if not isinstance(envelope, dict):
        envelope = {}
    dataset = envelope.get("dataset")
    dataset = dataset if isinstance(dataset, str) and dataset else UNROUTED
    line = orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "dataset": dataset,
            "id": envelope.get("id"),
            "source": envelope.get("source"),
            "received_at": envelope.get("received_at"),
            "errors": [{"field": "", "message": reason}],
            "data_base64": base64.b64encode(envelope_line).decode(),
        }
    )
    return dataset, line


def describe(exc: BaseException) -> str:
    """`ValueError: the message`: what a quarantine reason says about an exception."""
    return f"{type(exc).__name__}: {exc}"[:1000]
