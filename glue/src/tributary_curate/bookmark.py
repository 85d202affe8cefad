"""The curate bookmark: which raw objects of a dataset are already curated.

One JSON object per dataset at `_state/curate/<dataset>/bookmark.json`, the same locally and on
Glue. Raw keys sort by their ingestion hour (`year=/month=/day=/hour=`), so the bookmark keeps
an hour watermark and, for the hours after it (the late-arrival window, `CURATE_LATE_HOURS`
behind the newest hour seen), the set of processed keys grouped by hour. A run lists raw only
from the watermark on (ListObjectsV2 `StartAfter`), so its listing and the bookmark's size grow
with what is new plus the window, not with raw's whole retention; an object landing late in an
hour inside the window is still new. Written conditionally (S3 `If-Match` on the ETag read, or
`If-None-Match: *` for the first), so two runs of one dataset cannot both move it; the run's
claim (`tributary_curate.claim`) keeps a second run from starting at all.

Glue's own job bookmarks (`--job-bookmark-option job-bookmark-enable`) track S3 input by
modification time per transformation context and are kept by the Glue service; they do not
exist locally and cannot be inspected or reset per object. The job runs with them disabled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary.errors import PermanentError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class BookmarkConflictError(PermanentError):
    """The bookmark changed since it was read: another curate run of the dataset is going on."""


@dataclass(frozen=True, slots=True)
class Bookmark:
    """What curate remembers about one dataset."""

    dataset: str
    runs: int = 0
    processed: frozenset[str] = frozenset()  # raw keys done in the hours from `since` on
    last_run: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None  # of the stored object; None when there is none yet
    # `year=YYYY/month=MM/day=DD/hour=HH`: every raw key of an earlier hour is done. None: no
    # watermark yet (a first run, or a bookmark from before watermarks): list all of raw.
    since: str | None = None
    last_error: dict[str, Any] = field(default_factory=dict)  # the last failed run, if any

    def document(self) -> dict[str, Any]:
        """The stored JSON form (processed keys grouped by hour, as leaf names)."""
        grouped: dict[str, list[str]] = {}
        for key in sorted(self.processed):
            folder, _, leaf = key.rpartition("/")
            grouped.setdefault(folder, []).append(leaf)
        return {
            "dataset": self.dataset,
            "runs": self.runs,
            "since": self.since,
            "processed": grouped,
            "last_run": self.last_run,
            "last_error": self.last_error,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any], etag: str | None) -> Bookmark:
        """Parse the stored JSON form (also the older flat list of keys)."""
        stored = doc.get("processed", [])
        if isinstance(stored, dict):
            processed = frozenset(f"{f}/{leaf}" for f, leaves in stored.items() for leaf in leaves)
        else:
            processed = frozenset(stored)
        return cls(
            doc["dataset"],
            int(doc.get("runs", 0)),
            processed,
            dict(doc.get("last_run", {})),
            etag,
            doc.get("since"),
            dict(doc.get("last_error") or {}),
        )


def bookmark_key(dataset: str) -> str:
    """Where a dataset's bookmark lives in the lake bucket."""
    return f"_state/curate/{dataset}/bookmark.json"


class BookmarkStore(Protocol):
    """Reads and conditionally replaces bookmarks."""

    async def get(self, dataset: str) -> Bookmark:
        """The stored bookmark, or an empty one (etag None)."""

    async def put(self, bookmark: Bookmark) -> Bookmark:
        """Replace the bookmark read as `bookmark.etag`; returns it with the new etag. Raises
        `BookmarkConflictError` if it changed in between."""


class MemoryBookmarkStore:
    """`BookmarkStore` over a dict (tests)."""

    def __init__(self) -> None:
        self.bookmarks: dict[str, Bookmark] = {}
        self._versions = 0

    async def get(self, dataset: str) -> Bookmark:
        """The stored bookmark, or an empty one."""
        return self.bookmarks.get(dataset, Bookmark(dataset))

    async def put(self, bookmark: Bookmark) -> Bookmark:
        """Replace, conditionally on the etag read."""
        current = self.bookmarks.get(bookmark.dataset)
        if (current.etag if current else None) != bookmark.etag:
            raise BookmarkConflictError(f"bookmark of {bookmark.dataset} changed underneath")
        self._versions += 1
        stored = replace(bookmark, etag=f"v{self._versions}")
        self.bookmarks[bookmark.dataset] = stored
        return stored


class S3BookmarkStore:
    """`BookmarkStore` on the lake bucket, with conditional puts."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    async def get(self, dataset: str) -> Bookmark:
        """GetObject; an empty bookmark when there is none."""
        key = bookmark_key(dataset)
        try:
            response = await self._s3.get_object(Bucket=self._bucket, Key=key)
            async with response["Body"] as body:
                data = await body.read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return Bookmark(dataset)
            raise _translate(exc, key) from exc
        except BotoCoreError as exc:
            raise _translate(exc, key) from exc
        return Bookmark.from_document(orjson.loads(data), response["ETag"])

    async def put(self, bookmark: Bookmark) -> Bookmark:
        """PutObject with If-Match (or If-None-Match: * for the first)."""
        key = bookmark_key(bookmark.dataset)
        body = orjson.dumps(bookmark.document())
        try:
            if bookmark.etag is None:
                response = await self._s3.put_object(
                    Bucket=self._bucket, Key=key, Body=body, IfNoneMatch="*"
                )
            else:
                response = await self._s3.put_object(
                    Bucket=self._bucket, Key=key, Body=body, IfMatch=bookmark.etag
                )
        except ClientError as exc:
            if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                raise BookmarkConflictError(
                    f"the curate bookmark of {bookmark.dataset} changed while this run was going "
                    "on; is another curate run of it in progress? Rerun when it has finished."
                ) from exc
            raise _translate(exc, key) from exc
        except BotoCoreError as exc:
            raise _translate(exc, key) from exc
        return replace(bookmark, etag=response["ETag"])


def _translate(exc: Exception, key: str) -> Exception:
    return translate_aws_error(exc, f"curate bookmark {key}", "check LAKE_BUCKET and IAM")


_HOUR_FOLDER = re.compile(r"/(year=\d{4}/month=\d{2}/day=\d{2}/hour=\d{2})/")


def forget_hours(bookmark: Bookmark, listed: Iterable[str], first: str, last: str) -> Bookmark:
    """`bookmark` with the raw keys of hours `first`..`last` (inclusive, `year=…/hour=HH`) no
    longer curated, so the next run curates them again; every other key stays as it was.
    `listed` is every raw key of the dataset from `first` on: keys before the watermark were
    done without being listed in the bookmark, so the ones outside the range are kept as
    processed when the watermark moves back to `first`."""
    by_hour = {key: m.group(1) for key in listed if (m := _HOUR_FOLDER.search(key))}
    implicit = {k for k, h in by_hour.items() if bookmark.since and h < bookmark.since}
    forgotten = {k for k, h in by_hour.items() if first <= h <= last}
    since = bookmark.since if bookmark.since is None or bookmark.since <= first else first
    processed = frozenset((bookmark.processed | implicit) - forgotten)
    return replace(bookmark, since=since, processed=processed)
