"""`MemoryRawWriter`: the in-memory `RawWriter`, with S3's create-only semantics.

A product module, not a test helper: the API's `API_SINK=memory` (benchmarks, local runs) keeps
its quarantine here, and tests use it as the fake the S3 contract tests hold to the same rules.
"""

from __future__ import annotations

from tributary.errors import PermanentError, SinkUnavailableError
from tributary.raw_writer import ObjectInfo, RawObject, WriteOutcome


class MemoryRawWriter:
    """`RawWriter` over a dict, with the same create-only semantics as S3.

    `fail_next(n)` makes the next `n` puts raise `SinkUnavailableError` (fault injection);
    `down = True` makes every call fail until set back; keys under a prefix in `denied` are
    refused for good, like an S3 AccessDenied (`PermanentError`).
    """

    def __init__(self) -> None:
        self.objects: dict[str, RawObject] = {}
        self.down = False
        self.denied: set[str] = set()
        self._failures_left = 0

    def fail_next(self, count: int) -> None:
        """Make the next `count` puts fail as if the store were unreachable."""
        self._failures_left = count

    def _check(self) -> None:
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")
        if self._failures_left:
            self._failures_left -= 1
            raise SinkUnavailableError("memory store put failed (fault injected)")

    async def put(self, obj: RawObject) -> WriteOutcome:
        """Store `obj` unless the key exists."""
        self._check()
        if any(obj.key.startswith(prefix) for prefix in self.denied):
            raise PermanentError(f"put {obj.key} refused (AccessDenied) (fault injected)")
        if obj.key in self.objects:
            return WriteOutcome.ALREADY_EXISTS
        self.objects[obj.key] = obj
        return WriteOutcome.WRITTEN

    async def head(self, key: str) -> ObjectInfo | None:
        """Size and metadata of a stored object."""
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")
        obj = self.objects.get(key)
        return None if obj is None else ObjectInfo(key, len(obj.body), obj.metadata())

    async def keys(self, prefix: str) -> list[str]:
        """Stored keys under `prefix`."""
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")
        return sorted(k for k in self.objects if k.startswith(prefix))

    async def get(self, key: str) -> bytes:
        """A stored body."""
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")
        if key not in self.objects:
            raise PermanentError(f"no object {key}")
        return self.objects[key].body

    async def ping(self) -> None:
        """Fails only while `down`."""
        if self.down:
            raise SinkUnavailableError("memory store is down (fault injected)")
