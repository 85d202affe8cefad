"""Writing batch objects to the lake, create-only, so a retry or replay never overwrites.

A key is derived from the input, never random. `If-None-Match: *` makes S3 refuse (412) a second
write of the same key: that means an earlier attempt already made this batch durable, which is
success, not an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary.errors import PermanentError, SinkUnavailableError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

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
    """One object to write: key, gzip NDJSON body, and the input range it covers."""

    key: str
    body: bytes
    record_count: int
    first: str
    last: str
    extra_metadata: Mapping[str, str] = field(default_factory=dict)

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


class S3RawWriter:
    """`RawWriter` on an S3 bucket, using conditional `If-None-Match: *` puts."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    async def put(self, obj: RawObject) -> WriteOutcome:
        """Create-only PutObject; a 412 means an earlier attempt already wrote it."""
        try:
            await self._s3.put_object(
                Bucket=self._bucket,
                Key=obj.key,
                Body=obj.body,
                IfNoneMatch="*",
                ContentType="application/x-ndjson",
                ContentEncoding="gzip",
                Metadata=obj.metadata(),
            )
        except ClientError as exc:
            if error_code(exc) == "PreconditionFailed" or _status(exc) == 412:
                return WriteOutcome.ALREADY_EXISTS
            raise _translate(exc, f"put s3://{self._bucket}/{obj.key}") from exc
        except BotoCoreError as exc:
            raise _translate(exc, f"put s3://{self._bucket}/{obj.key}") from exc
        return WriteOutcome.WRITTEN

    async def head(self, key: str) -> ObjectInfo | None:
        """HeadObject; None on 404."""
        try:
            response = await self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise _translate(exc, f"head s3://{self._bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise _translate(exc, f"head s3://{self._bucket}/{key}") from exc
        size = int(response.get("ContentLength", 0))
        return ObjectInfo(key, size, dict(response.get("Metadata", {})))

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

    async def get(self, key: str) -> bytes:
        """GetObject."""
        try:
            response = await self._s3.get_object(Bucket=self._bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"get s3://{self._bucket}/{key}") from exc
        return data

    async def ping(self) -> None:
        """Check the bucket is reachable and ours (HeadBucket)."""
        try:
            await self._s3.head_bucket(Bucket=self._bucket)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"head bucket {self._bucket}") from exc


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _translate(exc: Exception, what: str) -> SinkUnavailableError | PermanentError:
    return translate_aws_error(exc, what, "check LAKE_BUCKET and the task's IAM permissions")
