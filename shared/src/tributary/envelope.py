"""The envelope: the one JSON object every raw line is (README, "What lands in the lake").

On the stream, the API's envelopes carry an HMAC-SHA256 signature (`sign_envelope`), so the
consumer can tell them from records that merely look like envelopes: only a holder of the shared
key can set `id`, `source` and `received_at`. Raw lines never carry the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tributary.errors import PermanentError

ENVELOPE_VERSION = 1
# Namespace for ids derived from (writer scope, request identity, index): stable across releases.
_ID_NAMESPACE = uuid.UUID("6f1c2d4e-8a53-4b7e-9a0c-2b1d5e3f7a91")


# `{...}` becomes `{...,"sig":"<64 hex>"}`: the signature is always the last member.
_SIG_PREFIX = b',"sig":"'
_SIG_HEX = 64
_SIG_SUFFIX_LEN = len(_SIG_PREFIX) + _SIG_HEX + 2  # ',"sig":"' + hex + '"}'
SIGNATURE_OVERHEAD = _SIG_SUFFIX_LEN - 1
"""Bytes a signature adds to an envelope line (count it against per-record limits)."""


MIN_SIGNING_KEY_CHARS = 32


def signing_keys(listed: str | None, single: str | None) -> tuple[bytes, ...]:
    """The envelope signing keys, the one to sign with first.

    `listed` is ENVELOPE_SIGNING_KEYS (comma-separated, newest first), `single` the older
    ENVELOPE_SIGNING_KEY, appended when not listed: to rotate, give every consumer the new key in
    ENVELOPE_SIGNING_KEYS (they verify with any), then the API (it signs with the first), then
    drop the old one. Raises `ValueError` for a key shorter than 32 characters.
    """
    keys = [k.strip() for k in (listed or "").split(",") if k.strip()]
    if single and single.strip() and single.strip() not in keys:
        keys.append(single.strip())
    if any(len(k) < MIN_SIGNING_KEY_CHARS for k in keys):
        raise ValueError(
            f"every envelope signing key (ENVELOPE_SIGNING_KEYS, ENVELOPE_SIGNING_KEY) must be "
            f"at least {MIN_SIGNING_KEY_CHARS} characters"
        )
    return tuple(k.encode() for k in keys)


class BadEnvelopeError(PermanentError):
    """A line that is not a valid envelope."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One record as it lands in raw: identity and provenance around the untouched payload."""

    dataset: str
    id: str
    source: str
    received_at: str  # ISO-8601 UTC with a Z suffix, see tributary.clock.iso_utc
    data: Any

    def to_json(self) -> bytes:
        """The envelope as one compact JSON object (no trailing newline)."""
        return encode_envelope(self.dataset, self.id, self.source, self.received_at, self.data)

    @classmethod
    def from_json(cls, line: bytes | str) -> Envelope:
        """Parse and check one envelope line; raises `BadEnvelopeError` saying what is wrong."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadEnvelopeError(f"not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise BadEnvelopeError("envelope must be a JSON object")
        if obj.get("v") != ENVELOPE_VERSION:
            raise BadEnvelopeError(f"unsupported envelope version {obj.get('v')!r}")
        for name in ("dataset", "id", "source", "received_at"):
            if not isinstance(obj.get(name), str) or not obj[name]:
                raise BadEnvelopeError(f"envelope field {name!r} must be a non-empty string")
        if "data" not in obj:
            raise BadEnvelopeError("envelope field 'data' is missing")
        return cls(obj["dataset"], obj["id"], obj["source"], obj["received_at"], obj["data"])


def encode_envelope(dataset: str, id_: str, source: str, received_at: str, data: Any) -> bytes:
    """Encode an envelope without building an `Envelope` first (the API's hot path)."""
    return orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "dataset": dataset,
            "id": id_,
            "source": source,
            "received_at": received_at,
            "data": data,
        }
    )


def derived_id(scope: str, request_id: str, index: int) -> str:
    """A deterministic record id for a record without its own id.

    The same (scope, request id, index) always gives the same id, so a retried request whose
    request id is the producer's Idempotency-Key carries the same ids as the first attempt.
    """
    return str(uuid.uuid5(_ID_NAMESPACE, f"{scope}\n{request_id}\n{index}"))


def _signature(line: bytes, key: bytes) -> bytes:
    return hmac.new(key, line, hashlib.sha256).hexdigest().encode()


def sign_envelope(line: bytes, key: bytes) -> bytes:
    """`line` (one compact envelope, ending in `}`) with a `sig` member: HMAC-SHA256 of `line`."""
    return line[:-1] + _SIG_PREFIX + _signature(line, key) + b'"}'


class EnvelopeVerifier:
    """`verify_envelope_any` for a fixed set of keys (the consumer's hot path).

    HMAC (RFC 2104) is H(K ^ opad || H(K ^ ipad || m)). The two keyed SHA-256 states are made
    once per key and copied for each record, instead of keying a new HMAC every time.
    """

    __slots__ = ("_keyed",)

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._keyed = tuple(_keyed_pads(key) for key in keys)

    def verify(self, data: bytes) -> bytes | None:
        """The unsigned envelope line when `data` is signed with any of the keys, else None
        (exactly what `verify_envelope_any` answers)."""
        end = self.signed_end(data)
        return None if end < 0 else data[:end] + b"}"

    def signed_end(self, data: bytes) -> int:
        """Where the signature member starts when `data` is signed with any of the keys (the
        unsigned line is `data[:end] + b"}"`), else -1; reads `data` without copying it."""
        if not self._keyed:
            return -1
        size = len(data)
        if data[-1:].isspace():  # trailing whitespace is not part of the signed line
            size = len(data.rstrip())
        end = size - _SIG_SUFFIX_LEN
        if end <= 0 or data[end : size - _SIG_HEX - 2] != _SIG_PREFIX:
            return -1
        if data[size - 2 : size] != b'"}':
            return -1
        view = memoryview(data)[:end]
        claimed = data[size - _SIG_HEX - 2 : size - 2]
        for inner_keyed, outer_keyed in self._keyed:
            inner = inner_keyed.copy()
            inner.update(view)
            inner.update(b"}")
            outer = outer_keyed.copy()
            outer.update(inner.digest())
            if hmac.compare_digest(outer.hexdigest().encode(), claimed):
                return end
        return -1


def _keyed_pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after K ^ ipad and K ^ opad (a key longer than a block is hashed first)."""
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    return (
        hashlib.sha256(bytes(b ^ 0x36 for b in key)),
        hashlib.sha256(bytes(b ^ 0x5C for b in key)),
    )


def verify_envelope_any(data: bytes, keys: Sequence[bytes]) -> bytes | None:
    """`verify_envelope` with each key in turn (a rotation: the new key and the old ones)."""
    for key in keys:
        line = verify_envelope(data, key)
        if line is not None:
            return line
    return None


def verify_envelope(data: bytes, key: bytes) -> bytes | None:
    """The unsigned envelope line when `data` is one signed with `key`, else None.

    Anything else — no signature, another key, a single byte changed, re-encoded JSON — is None:
    the caller treats such a record as a bare record, never as an envelope.
    """
    data = data.rstrip()
    if len(data) <= _SIG_SUFFIX_LEN or data[-_SIG_SUFFIX_LEN : -_SIG_HEX - 2] != _SIG_PREFIX:
        return None
    if not data.endswith(b'"}'):
        return None
    line = data[:-_SIG_SUFFIX_LEN] + b"}"
    if not hmac.compare_digest(_signature(line, key), data[-_SIG_HEX - 2 : -2]):
        return None
    return line
