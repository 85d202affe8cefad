"""`RawWriter` on an S3 bucket: create-only puts with `If-None-Match: *` (412 = already written)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary.errors import PermanentError, SinkUnavailableError
from tributary.raw_writer import ObjectInfo, RawObject, WriteOutcome

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


PING_PREFIX = "raw/"  # readiness lists one key here (the API's policy allows listing raw/ only)


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
                ContentType=obj.content_type,
                ContentEncoding=obj.content_encoding,
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
        """Check the bucket is reachable and ours: ListObjectsV2 of one key under raw/. Not
        HeadBucket: that is authorized as s3:ListBucket with no s3:prefix, which a policy can
        only allow by allowing a listing of the whole bucket."""
        try:
            await self._s3.list_objects_v2(Bucket=self._bucket, Prefix=PING_PREFIX, MaxKeys=1)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"list s3://{self._bucket}/{PING_PREFIX}") from exc


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _translate(exc: Exception, what: str) -> SinkUnavailableError | PermanentError:
    return translate_aws_error(exc, what, "check LAKE_BUCKET and the task's IAM permissions")
