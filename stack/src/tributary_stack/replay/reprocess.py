"""`reprocess --dataset D --from <hour> --to <hour>`: curate a range of raw again.

The curate bookmark forgets the raw objects of those hours (`forget_hours`, one conditional
put: If-Match on the ETag read; refused when a curate run held the dataset's claim at the
check, an advisory check: the If-Match put is what keeps a bookmark written meanwhile), then a
curate run curates them again. Nothing is duplicated: curate's anti-join drops every id already
in the curated partitions it touches, and its quarantine objects are named after their raw
object and written create-only (a rerun under another registry adds only the lines they lack,
as `<name>.rerun-<k>`: see `tributary_curate.outcome.publish_quarantine`). Run twice, or
killed after the bookmark moved, the rerun forgets the same keys again and the curate run adds
nothing new.

After forgetting, `--run glue` (the default on AWS) starts a run of the deployed curate job
(StartJobRun on `--job`, CURATE_JOB_NAME: the stack output `CurateJobName`, with
`--DATASETS D`), `--run local` runs the curate job here (Spark local: the embedded stack's
way) and `--run none` leaves the range to the next scheduled run.

`--dry-run` counts per curated partition, as curate would: the range's lines the current
registry accepts, placed by `partition_by`, deduped by id (the earliest arrival wins), and of
those distinct ids the ones already curated in any partition the range places rows in or their
dedupe look-back days (curate's anti-join is against that union: rows present) and the rest
(rows to add). It reads only those days' curated ids. A scheduled run may also touch days
outside the range (other raw objects it curates with it), which this count cannot know. Not
counted: the dataset's `filter` (Spark SQL) and cast failures, which a run would drop or
quarantine; the records refused or without a partition value are counted apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary.batch import decode_ndjson_gz
from tributary.clock import Clock
from tributary.dataset import Dataset
from tributary.errors import PermanentError, TransientError
from tributary.layout import RAW_SUFFIX, Zone
from tributary.raw_writer import RawWriter
from tributary_curate.bookmark import BookmarkStore, forget_hours
from tributary_curate.claim import ClaimStore
from tributary_stack.replay.curated import CuratedIds, partition_of

if TYPE_CHECKING:
    from types_aiobotocore_glue import GlueClient


class JobStarter(Protocol):
    """Starts a run of the curate job (the side effect of `--run glue`)."""

    async def start(self, dataset: str) -> str:
        """Start a run curating `dataset`; its run id."""


class CurateRunInProgressError(TransientError):
    """StartJobRun refused: the curate job is at its MaxConcurrentRuns (1: a scheduled run,
    possibly of another dataset, is running)."""


def start_command(job: str, dataset: str) -> str:
    """The AWS CLI command that starts the curate job for `dataset` by hand."""
    return f'aws glue start-job-run --job-name {job} --arguments \'{{"--DATASETS":"{dataset}"}}\''


class GlueJobStarter:
    """`JobStarter` on Glue: StartJobRun on the deployed curate job, for one dataset."""

    def __init__(self, glue: GlueClient, job: str) -> None:
        self._glue = glue
        self._job = job

    async def start(self, dataset: str) -> str:
        """StartJobRun with `--DATASETS dataset` (the job's other arguments are its defaults)."""
        try:
            response = await self._glue.start_job_run(
                JobName=self._job, Arguments={"--DATASETS": dataset}
            )
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and (
                error_code(exc) == "ConcurrentRunsExceededException"
            ):
                raise CurateRunInProgressError(
                    f"Glue job {self._job!r} is already running (a curate run, possibly of "
                    "another dataset: it runs one at a time), so no run was started"
                ) from exc
            raise translate_aws_error(
                exc,
                f"StartJobRun on Glue job {self._job!r}",
                "check --job / CURATE_JOB_NAME (the stack output CurateJobName) and IAM; a "
                "ConcurrentRunsExceededException means a curate run is in progress",
            ) from exc
        return str(response["JobRunId"])


class MemoryJobStarter:
    """`JobStarter` in memory: remembers the datasets it was asked to curate."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def start(self, dataset: str) -> str:
        """Record the request; a run id like Glue's (`jr_…`)."""
        self.started.append(dataset)
        return f"jr_{len(self.started):064d}"


HOUR_FORMAT = "year=%Y/month=%m/day=%d/hour=%H"


def hour_folder(value: str) -> str:
    """`year=…/hour=HH` of an ISO time or hour (`2026-12-01T10`, `2026-12-01T10:00:00Z`)."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text if len(text) > 13 else f"{text}:00")
    except ValueError as exc:
        raise PermanentError(
            f"{value!r} is not an hour; write e.g. 2026-12-01T10 or 2026-12-01T10:00Z"
        ) from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(HOUR_FORMAT)


@dataclass(frozen=True, slots=True)
class PartitionCount:
    """One curated partition (`year=…/month=…/day=…`) a reprocess would write to, as curate
    counts it: the range's valid lines placed there, their distinct ids after dedupe (the
    earliest arrival of each id wins, as in curate), of which already curated (in the
    partition or the dedupe look-back days before it: curate's anti-join) and to be added."""

    partition: str
    lines: int
    rows: int
    present: int
    would_add: int


@dataclass(frozen=True, slots=True)
class RangeCount:
    """What a reprocess of a range would find: per curated partition, and what stays out."""

    objects: int
    records: int
    invalid: int  # not JSON, not an envelope, or the current registry refuses the data
    unplaced: int  # valid, but no `partition_by` timestamp: curate quarantines them
    partitions: tuple[PartitionCount, ...]


class Reprocessor:
    """Forgets a range in the bookmark; counts what a rerun would find (for --dry-run)."""

    def __init__(
        self, lake: RawWriter, bookmarks: BookmarkStore, claims: ClaimStore, clock: Clock
    ) -> None:
        self._lake = lake
        self._bookmarks = bookmarks
        self._claims = claims
        self._clock = clock
        self._curated = CuratedIds(lake)  # a dry run's reads of curated ids, once per day

    async def range_keys(self, dataset: str, first: str, last: str) -> tuple[list[str], list[str]]:
        """Raw keys of the dataset from `first` on, and those of them in `first`..`last`."""
        prefix = f"{Zone.RAW}/{dataset}/"
        start = _hour_start(first)
        hours = []
        while (folder := start.strftime(HOUR_FORMAT)) <= last:
            hours.append(folder)
            start += timedelta(hours=1)
        in_range = [
            key
            for folder in hours
            for key in await self._lake.keys(f"{prefix}{folder}/")
            if key.endswith(RAW_SUFFIX)
        ]
        after = [
            key
            for key in await self._lake.keys(prefix)
            if key.endswith(RAW_SUFFIX) and key[len(prefix) :] >= first
        ]
        return after, in_range

    async def forget(self, dataset: str, first: str, last: str) -> int:
        """Make the bookmark forget the range; how many raw objects it had as curated."""
        claim = await self._claims.read(dataset)
        if claim is not None and claim.free_at > self._clock.now():
            raise PermanentError(
                f"a curate run of {dataset} is in progress ({claim.run_id}, held by "
                f"{claim.owner}); run reprocess again when it has finished"
            )
        listed, in_range = await self.range_keys(dataset, first, last)
        bookmark = await self._bookmarks.get(dataset)
        was_done = {
            k for k in in_range if k in bookmark.processed or (bookmark.since or "") > _hour(k)
        }
        await self._bookmarks.put(forget_hours(bookmark, listed, first, last))
        return len(was_done)

    async def count(self, dataset: Dataset, first: str, last: str) -> RangeCount:
        """Per curated partition: the rows a reprocess of the range would add and find."""
        _, in_range = await self.range_keys(dataset.name, first, last)
        earliest: dict[str, tuple[str, str, str]] = {}  # id → (received_at, raw key, partition)
        lines: Counter[str] = Counter()
        records = invalid = unplaced = 0
        for key in sorted(in_range):
            for line in decode_ndjson_gz(await self._lake.get(key)):
                records += 1
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    invalid += 1
                    continue
                if not isinstance(doc, dict) or not dataset.validator.is_valid(doc.get("data")):
                    invalid += 1
                    continue
                day = partition_of(dataset, doc)
                if day is None:
                    unplaced += 1
                    continue
                lines[day] += 1
                rid, seen = str(doc.get("id")), (str(doc.get("received_at", "")), key, day)
                if rid not in earliest or seen[:2] < earliest[rid][:2]:
                    earliest[rid] = seen
        ids: dict[str, set[str]] = {}
        for rid, (_, _, day) in earliest.items():
            ids.setdefault(day, set()).add(rid)
        # Curate's anti-join drops every id curated in any partition the run touches or their
        # look-back days (one union), not only the row's own day and those before it.
        curated: set[str] = set()
        for day in ids:
            curated |= await self._curated.seen_from(dataset, day)
        counts = []
        for day in sorted(ids):
            present = len(ids[day] & curated)
            counts.append(
                PartitionCount(day, lines[day], len(ids[day]), present, len(ids[day]) - present)
            )
        return RangeCount(len(in_range), records, invalid, unplaced, tuple(counts))


def _hour(key: str) -> str:
    parts = key.split("/")
    return "/".join(parts[2:6])


def _hour_start(folder: str) -> datetime:
    return datetime.strptime(folder, HOUR_FORMAT).replace(tzinfo=UTC)
