"""`RawWriter` on a local directory: the lake's layout on disk (local runs, benchmarks).

Create-only like S3's `If-None-Match: *`: the body is written to a temporary file and linked into
place with `os.link`, which fails if the key exists, so a reader never sees half an object.

User metadata rides on the temporary file as an extended attribute, so it appears with the object
in the same link and costs no second file; where the filesystem has no user xattrs it goes to a
`<key>.meta.json` sidecar written after the link. Plain `os` calls and remembered directories:
creating a file is the expensive step on a VM, so each object creates exactly one.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from pathlib import Path

from tributary.errors import PermanentError
from tributary.raw_writer import ObjectInfo, RawObject, WriteOutcome

XATTR = "user.tributary.metadata"
SIDECAR = ".meta.json"


class FileRawWriter:
    """Objects under `root`; metadata in an xattr, or a sidecar when `xattrs` is False or the
    filesystem refuses them (decided once, on the first write)."""

    def __init__(self, root: Path, *, xattrs: bool = True) -> None:
        self._root = root
        self._xattrs = xattrs and hasattr(os, "setxattr")
        self._made: set[str] = set()

    def _put(self, obj: RawObject) -> WriteOutcome:
        path = os.path.join(self._root, obj.key)
        directory, name = os.path.split(path)
        if directory not in self._made:
            os.makedirs(directory, exist_ok=True)
            self._made.add(directory)
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        metadata = json.dumps(obj.metadata()).encode()
        _write(tmp, obj.body)
        try:
            if self._xattrs:
                try:
                    os.setxattr(tmp, XATTR, metadata)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                        raise
                    self._xattrs = False
            os.link(tmp, path)  # atomic, and fails when the key exists
        except FileExistsError:
            return WriteOutcome.ALREADY_EXISTS
        finally:
            os.unlink(tmp)
        if not self._xattrs:  # only for the object this call created (never an earlier one's)
            _write(tmp, metadata)
            os.replace(tmp, path + SIDECAR)
        return WriteOutcome.WRITTEN

    async def put(self, obj: RawObject) -> WriteOutcome:
        """Create `obj` unless its key exists."""
        return await asyncio.to_thread(self._put, obj)

    async def head(self, key: str) -> ObjectInfo | None:
        """Size and metadata."""
        path = self._root / key
        if not path.exists():
            return None
        return ObjectInfo(key, path.stat().st_size, _read_metadata(path))

    async def ping(self) -> None:
        """The root is a writable directory."""
        if not os.access(self._root, os.W_OK):
            raise PermanentError(f"{self._root} is not a writable directory")

    async def keys(self, prefix: str) -> list[str]:
        """Keys under `prefix` (metadata sidecars and temporary files excluded)."""
        found = []
        for path in self._root.rglob("*"):
            key = path.relative_to(self._root).as_posix()
            if path.is_file() and key.startswith(prefix) and not key.endswith((SIDECAR, ".tmp")):
                found.append(key)
        return sorted(found)

    async def get(self, key: str) -> bytes:
        """The body."""
        path = self._root / key
        if not path.is_file():
            raise PermanentError(f"no object {key} under {self._root}")
        return path.read_bytes()


def _read_metadata(path: Path) -> dict[str, str]:
    sidecar = path.with_name(path.name + SIDECAR)
    if sidecar.exists():
        found: dict[str, str] = json.loads(sidecar.read_text())
        return found
    if hasattr(os, "getxattr"):
        try:
            found = json.loads(os.getxattr(path, XATTR))
        except OSError:
            return {}
        return found
    return {}


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
