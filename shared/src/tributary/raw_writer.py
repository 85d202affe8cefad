"""Writing batch objects to the lake, create-only, so a retry or replay never overwrites.

A key is derived from the input, never random. `If-None-Match: *` makes S3 refuse (412) a second
write of the same key: that means an earlier attempt already made this batch durable, which is
success, not an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

# User-metadata names (S3 sends them as x-amz-meta-<name>).
META_RECORDS = "records"
META_FIRST = "first"
META_LAST = "last"


class WriteOutcome(StrEnum):
    """What a create-only write did."""

    WRITTEN = "written"
    ALREADY_EXISTS = "already_exists"


@dataclass(frozen=True, slots=True)
class RawObject:
    """One object to write: key, body (gzip NDJSON unless said otherwise), the input range it
    covers."""

    key: str
    body: bytes
    record_count: int
    first: str
    last: str
    extra_metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/x-ndjson"
    content_encoding: str = "gzip"  # "identity" for none

    def metadata(self) -> dict[str, str]:
        """User metadata stored with the object."""
        return {
            **self.extra_metadata,
            META_RECORDS: str(self.record_count),
            META_FIRST: self.first,
            META_LAST: self.last,
        }


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a head request tells about a written object."""

    key: str
    size: int
    metadata: Mapping[str, str]


class RawWriter(Protocol):
    """A create-only object store for batch objects."""

    async def put(self, obj: RawObject) -> WriteOutcome:
        """Write `obj` unless its key exists.

        Returns WRITTEN once the object is durable, or ALREADY_EXISTS when the key was already
        there (its content is not compared). Raises `SinkUnavailableError` (transient) when the
        store did not make it durable, `PermanentError` when it refused the request for good.
        """

    async def head(self, key: str) -> ObjectInfo | None:
        """Size and metadata of the object at `key`, or None when there is none."""

    async def ping(self) -> None:
        """Raise `SinkUnavailableError` or `PermanentError` unless the store is reachable."""

    async def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted (to recover what an interrupted run wrote)."""

    async def get(self, key: str) -> bytes:
        """The body of the object at `key` (raises `PermanentError` when there is none)."""
