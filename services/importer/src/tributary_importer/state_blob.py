"""Where the large part of importer state lives: the look-back ids, as one S3 object per version.

A DynamoDB item holds at most 400 KB; a busy source's look-back window can hold far more ids
than that. The state item keeps the cursor and a reference to the object; the object is written
before the item, so an item never names an object that is not there.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import translate_aws_error

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

BLOB_PREFIX = "_state/importer/"  # beside the curate job's _state/curate/


class StateBlobs(Protocol):
    """A small object store for state blobs (keys under `BLOB_PREFIX`)."""

    async def put(self, key: str, body: bytes) -> None:
        """Store `body` at `key` (durable when this returns); an existing object is replaced."""

    async def get(self, key: str) -> bytes | None:
        """The body at `key`, or None when there is none."""

    async def delete(self, key: str) -> None:
        """Remove `key` (no error when it is already gone)."""

    async def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted."""


class MemoryStateBlobs:
    """`StateBlobs` in a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, key: str, body: bytes) -> None:
        """Store it."""
        self.objects[key] = bytes(body)

    async def get(self, key: str) -> bytes | None:
        """Stored or None."""
        return self.objects.get(key)

    async def delete(self, key: str) -> None:
        """Forget it."""
        self.objects.pop(key, None)

    async def keys(self, prefix: str) -> list[str]:
        """Sorted keys under the prefix."""
        return sorted(k for k in self.objects if k.startswith(prefix))


class S3StateBlobs:
    """`StateBlobs` in the lake bucket, under `_state/importer/`."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    async def put(self, key: str, body: bytes) -> None:
        """PutObject."""
        try:
            await self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=io.BytesIO(body),  # a large bytes body makes aiohttp warn
                ContentType="application/json",
                ContentEncoding="gzip",
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"put s3://{self._bucket}/{key}") from exc

    async def get(self, key: str) -> bytes | None:
        """GetObject; None when it is not there."""
        try:
            response = await self._s3.get_object(Bucket=self._bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _translate(exc, f"get s3://{self._bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise _translate(exc, f"get s3://{self._bucket}/{key}") from exc
        return data

    async def delete(self, key: str) -> None:
        """DeleteObject."""
        try:
            await self._s3.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"delete s3://{self._bucket}/{key}") from exc

    async def keys(self, prefix: str) -> list[str]:
        """ListObjectsV2, every page."""
        keys: list[str] = []
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                keys += [obj["Key"] for obj in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"list s3://{self._bucket}/{prefix}") from exc
        return sorted(keys)


def _translate(exc: Exception, what: str) -> Exception:
    return translate_aws_error(exc, f"importer state blob: {what}", "check LAKE_BUCKET and IAM")
