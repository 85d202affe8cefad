"""`RawWriter` on a local directory: the lake's layout on disk (local runs, benchmarks).

Create-only like S3's `If-None-Match: *`: the body is written to a temporary file and linked into
place with `os.link`, which fails if the key exists, so a reader never sees half an object.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from tributary.errors import PermanentError
from tributary.raw_writer import ObjectInfo, RawObject, WriteOutcome


class FileRawWriter:
    """Objects under `root`, user metadata in `<key>.meta.json` beside each."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _put(self, obj: RawObject) -> WriteOutcome:
        path = self._root / obj.key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(obj.body)
        try:
            os.link(tmp, path)  # atomic, and fails when the key exists
        except FileExistsError:
            return WriteOutcome.ALREADY_EXISTS
        finally:
            tmp.unlink()
        # Metadata only for the object this call created (never over an earlier one's).
        meta_tmp = path.with_name(f".{path.name}.{os.getpid()}.meta.tmp")
        meta_tmp.write_text(json.dumps(obj.metadata()))
        meta_tmp.replace(path.parent / f"{path.name}.meta.json")
        return WriteOutcome.WRITTEN

    async def put(self, obj: RawObject) -> WriteOutcome:
        """Create `obj` unless its key exists."""
        return await asyncio.to_thread(self._put, obj)

    async def head(self, key: str) -> ObjectInfo | None:
        """Size and metadata."""
        path = self._root / key
        if not path.exists():
            return None
        meta = path.parent / f"{path.name}.meta.json"
        metadata = json.loads(meta.read_text()) if meta.exists() else {}
        return ObjectInfo(key, path.stat().st_size, metadata)

    async def ping(self) -> None:
        """The root is a writable directory."""
        if not os.access(self._root, os.W_OK):
            raise PermanentError(f"{self._root} is not a writable directory")

    async def keys(self, prefix: str) -> list[str]:
        """Keys under `prefix` (metadata sidecars excluded)."""
        found = []
        for path in self._root.rglob("*"):
            key = path.relative_to(self._root).as_posix()
            if (
                path.is_file()
                and key.startswith(prefix)
                and not key.endswith((".meta.json", ".tmp"))
            ):
                found.append(key)
        return sorted(found)

    async def get(self, key: str) -> bytes:
        """The body."""
        path = self._root / key
        if not path.is_file():
            raise PermanentError(f"no object {key} under {self._root}")
        return path.read_bytes()
