"""Listing from a key onward and deleting: the two lake operations curate needs beyond `RawWriter`.

`keys_after` is ListObjectsV2 with `StartAfter`: raw keys sort by their hour partition, so a run
lists only the hours from its bookmark's open window onward, not the whole retention. `delete`
removes a run's own staging prefix once it has published.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import translate_aws_error
from tributary.errors import PermanentError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

    from tributary.testing import MemoryRawWriter

PAGE = 1000  # keys per ListObjectsV2 page (S3's maximum)
DELETE_BATCH = 1000  # keys per DeleteObjects call (S3's maximum)


class LakeIndex(Protocol):
    """Lists and deletes lake keys."""

    async def keys_after(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Every key under `prefix` that sorts after `start_after` (all when None), sorted.
        Raises `SinkUnavailableError` (transient) or `PermanentError`."""

    async def delete(self, keys: list[str]) -> None:
        """Delete `keys` (missing ones are fine). Raises as `keys_after` does."""


class S3LakeIndex:
    """`LakeIndex` on an S3 bucket; counts the calls it makes (`calls`)."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self.calls = 0

    async def keys_after(self, prefix: str, start_after: str | None = None) -> list[str]:
        """ListObjectsV2 from `start_after`, every page."""
        keys: list[str] = []
        token: str | None = None
        try:
            while True:
                kwargs: dict[str, str] = {"Bucket": self._bucket, "Prefix": prefix}
                if token:
                    kwargs["ContinuationToken"] = token
                elif start_after:
                    kwargs["StartAfter"] = start_after
                self.calls += 1
                page = await self._s3.list_objects_v2(**kwargs)  # type: ignore[arg-type]
                keys += [obj["Key"] for obj in page.get("Contents", [])]
                token = page.get("NextContinuationToken")
                if not token:
                    break
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"list s3://{self._bucket}/{prefix}") from exc
        return sorted(keys)

    async def delete(self, keys: list[str]) -> None:
        """DeleteObjects, 1,000 keys a call; any per-key error is raised."""
        for start in range(0, len(keys), DELETE_BATCH):
            chunk = keys[start : start + DELETE_BATCH]
            self.calls += 1
            try:
                answer = await self._s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc, f"delete under s3://{self._bucket}") from exc
            if answer.get("Errors"):
                raise PermanentError(
                    f"could not delete {answer['Errors'][:3]} in s3://{self._bucket}; check IAM"
                )


class MemoryLakeIndex:
    """`LakeIndex` over a `MemoryRawWriter`'s objects; counts calls as S3 would page them."""

    def __init__(self, lake: MemoryRawWriter) -> None:
        self._lake = lake
        self.calls = 0

    async def keys_after(self, prefix: str, start_after: str | None = None) -> list[str]:
        """The stored keys under `prefix` after `start_after`."""
        await self._lake.ping()
        found = sorted(
            k
            for k in self._lake.objects
            if k.startswith(prefix) and (start_after is None or k > start_after)
        )
        self.calls += max(1, -(-len(found) // PAGE))
        return found

    async def delete(self, keys: list[str]) -> None:
        """Forget `keys`."""
        await self._lake.ping()
        self.calls += max(1, -(-len(keys) // DELETE_BATCH)) if keys else 0
        for key in keys:
            self._lake.objects.pop(key, None)


def _translate(exc: Exception, what: str) -> Exception:
    return translate_aws_error(exc, what, "check LAKE_BUCKET and IAM")
