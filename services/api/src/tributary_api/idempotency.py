"""Idempotency-Key bookkeeping: a key is bound to the first body sent with it, in the lake.

Each request that carries an Idempotency-Key claims it with a small create-only object
(`_idempotency/api/<dataset>/<batch id>.json`, outside the zones every reader lists) whose
metadata holds the SHA-256 of the records and the time the first attempt was received.
A retry with the same records finds the claim and reuses that time, so it rebuilds the very same
envelopes and object keys — in whatever UTC hour it arrives — and create-only writes make the
second attempt a no-op. A reuse of the key with other records gets `IdempotencyConflictError`
(409) and writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from tributary.clock import iso_utc
from tributary.errors import PermanentError, SinkUnavailableError
from tributary.raw_writer import ObjectInfo, RawObject, RawWriter, WriteOutcome

META_DIGEST = "content-sha256"  # user metadata on every object of an idempotent request
META_RECEIVED_AT = "received-at"
CLAIM_PREFIX = "_idempotency/api/"


class IdempotencyConflictError(PermanentError):
    """The Idempotency-Key was used before with different records; nothing was written."""


def content_digest(records: Iterable[Any]) -> str:
    """SHA-256 of the records as parsed (key order does not matter, the body's form does not).

    Fed one record at a time (each canonical JSON, newline-terminated): the request's records
    are never serialised whole a second time.
    """
    digest = hashlib.sha256()
    dumps, sort_keys = orjson.dumps, orjson.OPT_SORT_KEYS
    for record in records:
        digest.update(dumps(record, option=sort_keys))
        digest.update(b"\n")
    return digest.hexdigest()


def claim_key(dataset: str, batch_id: str) -> str:
    """Where the claim of one (key name, dataset, Idempotency-Key) lives."""
    return f"{CLAIM_PREFIX}{dataset}/{batch_id}.json"


def check_same_content(info: ObjectInfo | None, digest: str, idempotency_key: str) -> ObjectInfo:
    """`info`, unless the existing object was written for other records (a conflict).

    Objects without a digest (written before digests were stored) are taken as they are.
    """
    if info is None:
        raise SinkUnavailableError("an object reported as existing is not there; retry")
    stored = info.metadata.get(META_DIGEST)
    if stored is not None and stored != digest:
        raise _conflict(idempotency_key)
    return info


def _conflict(idempotency_key: str) -> IdempotencyConflictError:
    return IdempotencyConflictError(
        f"Idempotency-Key {idempotency_key!r} was already used with different records; "
        "send new records with a new Idempotency-Key (an identical retry is answered as before)"
    )


class RequestLedger:
    """Claims Idempotency-Keys in a create-only store (the lake in production)."""

    def __init__(self, store: RawWriter) -> None:
        self._store = store

    async def claim(
        self, dataset: str, batch_id: str, idempotency_key: str, digest: str, received: datetime
    ) -> datetime:
        """The receive time of the first attempt with this key: `received` when this is it.

        Raises `IdempotencyConflictError` when the key was claimed for other records, and the
        store's errors (`SinkUnavailableError`, `PermanentError`) when it cannot answer.
        """
        key = claim_key(dataset, batch_id)
        received_at = iso_utc(received)
        outcome = await self._store.put(
            RawObject(
                key=key,
                body=orjson.dumps({"digest": digest, "received_at": received_at}),
                record_count=0,
                first=batch_id,
                last=batch_id,
                extra_metadata={META_DIGEST: digest, META_RECEIVED_AT: received_at},
                content_type="application/json",
                content_encoding="identity",
            )
        )
        if outcome is WriteOutcome.WRITTEN:
            return received
        info = check_same_content(await self._store.head(key), digest, idempotency_key)
        first = info.metadata.get(META_RECEIVED_AT)
        if first is None:
            raise PermanentError(f"claim {key} has no {META_RECEIVED_AT} metadata")
        return datetime.fromisoformat(first)
