"""The history of replay commands (`redrive`, `rewind`, `reprocess`), kept in the lake bucket.

Each run writes two create-only JSON objects under `_state/replay/history/`: one when it starts
(who, when, what it was asked) and one when it finishes (what it did, how many). A run killed
half way leaves only the first, which `status` shows as not finished; its rerun is a run of its
own. Names sort by start time, so the newest are listed last.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from tributary.clock import Clock, SystemClock, iso_utc
from tributary.errors import PermanentError, TributaryError
from tributary.raw_writer import RawObject, RawWriter
from tributary.table import render

HISTORY_PREFIX = "_state/replay/history/"


class Command(StrEnum):
    """The replay commands."""

    REDRIVE = "redrive"
    REWIND = "rewind"
    REPROCESS = "reprocess"


class Phase(StrEnum):
    """Which of a run's two history objects."""

    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"  # refused or stopped by an error (a TributaryError), not killed


def default_actor() -> str:
    """`user@host`: who runs a command when `--by` does not say."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of a replay command, as its history objects tell it."""

    command: Command
    run_id: str
    by: str
    started_at: str
    what: dict[str, Any]
    finished_at: str | None = None
    dry_run: bool = False
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why it failed (a failed run has `finished_at` too)


_last_ns = 0


def new_run_id() -> str:
    """A run id that sorts by when the run began (a nanosecond stamp, strictly increasing in
    this process) and is unique across processes (a random tail): runs started in the same
    millisecond are listed in the order they began."""
    global _last_ns
    _last_ns = max(time.time_ns(), _last_ns + 1)
    return f"{_last_ns:019d}-{uuid.uuid4().hex[:6]}"


class HistoryLog:
    """Writes and reads replay history through a create-only `RawWriter` on the lake bucket."""

    def __init__(self, store: RawWriter, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def begin(self, command: Command, by: str, what: dict[str, Any], *, dry_run: bool) -> RunRecord:
        """A new run (not stored yet: `started` stores it)."""
        now = self._clock.now()
        return RunRecord(command, new_run_id(), by, iso_utc(now), what, dry_run=dry_run)

    async def started(self, run: RunRecord) -> None:
        """Store the run's start (dry runs are not history)."""
        if not run.dry_run:
            await self._put(run, Phase.STARTED, {})

    async def finished(self, run: RunRecord, counts: dict[str, Any]) -> RunRecord:
        """Store the run's end with what it did."""
        done = RunRecord(
            run.command,
            run.run_id,
            run.by,
            run.started_at,
            run.what,
            iso_utc(self._clock.now()),
            run.dry_run,
            counts,
        )
        if not run.dry_run:
            await self._put(done, Phase.FINISHED, counts)
        return done

    @contextlib.asynccontextmanager
    async def failing(self, run: RunRecord) -> AsyncIterator[None]:
        """Around a run's work: a TributaryError stores the run as failed, then goes on up."""
        try:
            yield
        except TributaryError as exc:
            if not run.dry_run:
                failed = replace(run, finished_at=iso_utc(self._clock.now()), error=str(exc))
                await self._put(failed, Phase.FAILED, {})
            raise

    async def runs(self, limit: int | None = None) -> list[RunRecord]:
        """The stored runs (the last `limit` of them), oldest first; a run without its finish
        has `finished_at` None. Keys sort by start, so only those runs' objects are read."""
        found: dict[str, RunRecord] = {}
        keys = await self._store.keys(HISTORY_PREFIX)
        if limit is not None:
            stems = sorted({key.rsplit(".", 2)[0] for key in keys})[-limit:]
            keys = [key for key in keys if key.rsplit(".", 2)[0] in set(stems)]
        for key in keys:
            doc = orjson.loads(await self._store.get(key))
            record = RunRecord(
                Command(doc["command"]),
                doc["run_id"],
                doc["by"],
                doc["started_at"],
                dict(doc.get("what", {})),
                doc.get("finished_at"),
                False,
                dict(doc.get("counts", {})),
                doc.get("error"),
            )
            if doc["phase"] != Phase.STARTED or record.run_id not in found:
                found[record.run_id] = record
        return sorted(found.values(), key=lambda r: (r.started_at, r.run_id))

    async def _put(self, run: RunRecord, phase: Phase, counts: dict[str, Any]) -> None:
        stamp = run.started_at.replace(":", "").replace("-", "").replace(".", "")
        key = f"{HISTORY_PREFIX}{stamp}-{run.command}-{run.run_id}.{phase}.json"
        body = orjson.dumps(
            {
                "phase": phase,
                "command": run.command,
                "run_id": run.run_id,
                "by": run.by,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "what": run.what,
                "counts": counts,
                "error": run.error,
            }
        )
        await self._store.put(
            RawObject(
                key,
                body,
                1,
                run.run_id,
                run.run_id,
                content_type="application/json",
                content_encoding="identity",
            )
        )


def parse_time(value: str) -> datetime:
    """An ISO-8601 instant (`Z` or an offset; none means UTC); a clear error otherwise."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PermanentError(
            f"{value!r} is not an ISO-8601 time; write e.g. 2026-12-01T10:00:00Z"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


LAST_RUNS = 20  # runs `status` shows


async def history_table(store: RawWriter, limit: int = LAST_RUNS) -> str:
    """The last `limit` replay runs as a table: who, when, what, how many."""
    runs = await HistoryLog(store, SystemClock()).runs(limit)
    rows = [
        [
            run.started_at,
            str(run.command),
            run.by,
            _what(run.what),
            f"failed: {run.error}"[:80]
            if run.error
            else run.finished_at or "not finished (killed? run it again)",
            _counts(run.counts),
        ]
        for run in runs
    ]
    return render(
        ["started", "command", "by", "what", "finished", "how many"],
        rows,
        title=f"\nReplay history (redrive, rewind, reprocess; {HISTORY_PREFIX})",
    )


def _what(what: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in what.items() if v not in (None, [], ""))[:60]


def _counts(counts: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict))[:70]
