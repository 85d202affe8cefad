"""Where Spark reads and writes during a curate run.

Every run stages under a place of its own, named by its run id, and removes it once it has
published: nothing a crashed or concurrent run left behind is ever read as this run's output.

- `LocalStaging`: inputs copied from the lake into `<root>/in/`, Spark writes `<root>/out/`.
- `S3Staging`: the output is staged in `s3://<lake>/_staging/curate/<dataset>/<run id>/` and
  published from there. On Glue Spark reads `s3://` and writes that prefix directly. Locally
  (`CURATE_STAGING=s3`) Spark cannot use `s3://` (the s3a jars are not downloadable here), so
  it reads local copies and writes a local folder that `commit` uploads to the same prefix;
  listing, publishing and removing the prefix are the same code as on Glue.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Protocol

from tributary.raw_writer import RawObject, RawWriter
from tributary_curate.index import LakeIndex

FETCH_CONCURRENCY = 16
STAGING_PREFIX = "_staging/curate"


class Staging(Protocol):
    """Where Spark reads lake objects from and writes its output to, for one run."""

    @property
    def uri(self) -> str:
        """Where this run stages (an `s3://` URI or a local path), for the bookmark."""

    async def inputs(self, keys: list[str]) -> list[str]:
        """Paths Spark can read for these lake keys (local copies, or s3:// URIs)."""

    def output(self, name: str) -> str:
        """A fresh place for Spark to write output `name` to."""

    async def commit(self, name: str) -> None:
        """Make what Spark wrote under `name` visible to `outputs` (uploads it when Spark
        wrote locally for an S3 staging)."""

    async def outputs(self, name: str) -> list[tuple[str, bytes]]:
        """The data files under output `name`: (path relative to it, bytes)."""

    async def cleanup(self) -> None:
        """Remove everything this run staged."""


def is_data_file(relative: str) -> bool:
    """Whether a path Spark wrote (relative to its output) is data: not `_SUCCESS`, not a
    checksum, and under no `_`/`.` folder (`_temporary/…/part-*` of an unfinished task attempt
    is not output, even when it ends in `.parquet`)."""
    parts = relative.split("/")
    return not any(p.startswith(("_", ".")) for p in parts) and not relative.endswith(".crc")


def _data_files(base: Path) -> list[Path]:
    """Files Spark wrote under `base` that are data (`is_data_file`)."""
    if not base.exists():
        return []
    return sorted(
        p for p in base.rglob("*") if p.is_file() and is_data_file(p.relative_to(base).as_posix())
    )


async def _fetch_all(root: Path, lake: RawWriter, keys: list[str]) -> list[str]:
    """Copy the keys not already under `root/in/`; their local paths."""
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def fetch(key: str) -> str:
        path = root / "in" / key
        if not path.exists():
            async with gate:
                body = await lake.get(key)
            await asyncio.to_thread(write_atomically, path, body)
        return str(path)

    return list(await asyncio.gather(*(fetch(k) for k in keys)))


class LocalStaging:
    """Inputs copied into `root/in/<key>`, outputs under `root/out/<name>/`."""

    def __init__(self, root: Path, lake: RawWriter) -> None:
        self._root = root
        self._lake = lake

    @property
    def uri(self) -> str:
        """The local folder."""
        return str(self._root)

    async def inputs(self, keys: list[str]) -> list[str]:
        """Local copies."""
        return await _fetch_all(self._root, self._lake, keys)

    def output(self, name: str) -> str:
        """`root/out/<name>` (Spark creates it)."""
        return str(self._root / "out" / name)

    async def commit(self, name: str) -> None:
        """Nothing to do: Spark wrote where `outputs` reads."""

    async def outputs(self, name: str) -> list[tuple[str, bytes]]:
        """Data files Spark wrote."""
        base = self._root / "out" / name

        def read() -> list[tuple[str, bytes]]:
            return [(p.relative_to(base).as_posix(), p.read_bytes()) for p in _data_files(base)]

        return await asyncio.to_thread(read)  # file reads off the event loop

    async def cleanup(self) -> None:
        """Remove the folder."""
        await asyncio.to_thread(shutil.rmtree, self._root, True)


class S3Staging:
    """Staging in `s3://<bucket>/_staging/curate/<dataset>/<run id>/` (see the module doc).

    `local` is None on Glue (Spark reads and writes `s3://` itself); otherwise the folder where
    Spark reads input copies and writes output that `commit` uploads.
    """

    def __init__(
        self,
        bucket: str,
        dataset: str,
        run_id: str,
        lake: RawWriter,
        index: LakeIndex,
        local: Path | None = None,
    ) -> None:
        self._bucket = bucket
        self._prefix = f"{STAGING_PREFIX}/{dataset}/{run_id}"
        self._lake = lake
        self._index = index
        self._local = local

    @property
    def uri(self) -> str:
        """s3://<bucket>/_staging/curate/<dataset>/<run id>/."""
        return f"s3://{self._bucket}/{self._prefix}/"

    async def inputs(self, keys: list[str]) -> list[str]:
        """s3:// URIs on Glue; local copies otherwise."""
        if self._local is None:
            return [f"s3://{self._bucket}/{k}" for k in keys]
        return await _fetch_all(self._local, self._lake, keys)

    def output(self, name: str) -> str:
        """The staging prefix's `<name>/` (on Glue), or a local folder to upload from."""
        if self._local is None:
            return f"s3://{self._bucket}/{self._prefix}/{name}"
        return str(self._local / "out" / name)

    async def commit(self, name: str) -> None:
        """Upload what Spark wrote locally into the staging prefix (create-only)."""
        if self._local is None:
            return
        base = self._local / "out" / name
        for path in _data_files(base):
            key = f"{self._prefix}/{name}/{path.relative_to(base).as_posix()}"
            body = await asyncio.to_thread(path.read_bytes)
            await self._lake.put(
                RawObject(
                    key,
                    body,
                    0,
                    "staging",
                    "staging",
                    {"writer": "curate"},
                    content_type="application/octet-stream",
                    content_encoding="identity",
                )
            )

    async def outputs(self, name: str) -> list[tuple[str, bytes]]:
        """What is staged under `<prefix>/<name>/`."""
        base = f"{self._prefix}/{name}/"
        found = []
        for key in await self._index.keys_after(base):
            if is_data_file(key[len(base) :]):
                found.append((key[len(base) :], await self._lake.get(key)))
        return found

    async def cleanup(self) -> None:
        """Delete the run's staging prefix (and the local folder)."""
        await self._index.delete(await self._index.keys_after(f"{self._prefix}/"))
        if self._local is not None:
            await asyncio.to_thread(shutil.rmtree, self._local, True)


def write_atomically(path: Path, body: bytes) -> None:
    """Write `body` to `path` through a temporary file, so no reader sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(body)
    tmp.replace(path)
