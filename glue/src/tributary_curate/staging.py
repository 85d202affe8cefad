"""Where Spark reads and writes during a curate run.

Locally Spark cannot read `s3://` (the s3a jars are not downloadable here), so `LocalStaging`
copies the run's inputs from the lake into a temporary folder and hands Spark local paths; on
Glue, `S3Staging` hands Spark `s3://` URIs and a staging prefix. Either way the job publishes
the output itself, create-only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tributary.raw_writer import RawWriter

FETCH_CONCURRENCY = 16


class LocalStaging:
    """Inputs copied into `root/in/<key>`, outputs under `root/out/<name>/`."""

    def __init__(self, root: Path, lake: RawWriter) -> None:
        self._root = root
        self._lake = lake

    async def inputs(self, keys: list[str]) -> list[str]:
        """Copy the keys not already here; their local paths."""
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(key: str) -> str:
            path = self._root / "in" / key
            if not path.exists():
                async with gate:
                    body = await self._lake.get(key)
                await asyncio.to_thread(write_atomically, path, body)
            return str(path)

        return list(await asyncio.gather(*(fetch(k) for k in keys)))

    def output(self, name: str) -> str:
        """`root/out/<name>` (Spark creates it)."""
        return str(self._root / "out" / name)

    async def outputs(self, name: str) -> list[tuple[str, bytes]]:
        """Data files Spark wrote (its `_SUCCESS` and checksum files left out)."""
        base = self._root / "out" / name
        if not base.exists():
            return []
        files = sorted(
            p
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(("_", ".")) and not p.name.endswith(".crc")
        )
        return [(p.relative_to(base).as_posix(), p.read_bytes()) for p in files]


class S3Staging:
    """On Glue: Spark reads `s3://<bucket>/<key>` and writes under a staging prefix."""

    def __init__(self, bucket: str, prefix: str, lake: RawWriter) -> None:
        self._bucket = bucket
        self._prefix = prefix.rstrip("/")
        self._lake = lake

    async def inputs(self, keys: list[str]) -> list[str]:
        """s3:// URIs of the keys."""
        return [f"s3://{self._bucket}/{k}" for k in keys]

    def output(self, name: str) -> str:
        """s3://<bucket>/<prefix>/<name>."""
        return f"s3://{self._bucket}/{self._prefix}/{name}"

    async def outputs(self, name: str) -> list[tuple[str, bytes]]:
        """What Spark wrote under the staging prefix."""
        base = f"{self._prefix}/{name}/"
        found = []
        for key in await self._lake.keys(base):
            leaf = key.rsplit("/", 1)[-1]
            if leaf.startswith(("_", ".")) or leaf.endswith(".crc"):
                continue
            found.append((key[len(base) :], await self._lake.get(key)))
        return found


def write_atomically(path: Path, body: bytes) -> None:
    """Write `body` to `path` through a temporary file, so no reader sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(body)
    tmp.replace(path)
