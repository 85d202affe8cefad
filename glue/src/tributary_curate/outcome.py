"""What a curate run did, and where its quarantined lines go."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from tributary.batch import decode_ndjson_gz, encode_ndjson_gz
from tributary.layout import RAW_SUFFIX, Zone, partition_prefix
from tributary.raw_writer import RawObject, RawWriter, WriteOutcome
from tributary_curate.window import hour_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True, slots=True)
class CurateResult:
    """What one run did (all counts in records)."""

    dataset: str
    run: int
    raw_objects: int = 0
    lines: int = 0
    quarantined: int = 0
    filtered: int = 0
    duplicates: int = 0
    curated: int = 0
    files: int = 0
    partitions: tuple[tuple[str, ...], ...] = ()
    catalog: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    children: dict[str, int] = field(default_factory=dict)  # child table → rows curated
    quality: tuple[dict[str, Any], ...] = ()  # each rule's result (tributary_curate.quality)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly form (logs, the bookmark's last_run, the CLI)."""
        return {
            "run": self.run,
            "raw_objects": self.raw_objects,
            "lines": self.lines,
            "quarantined": self.quarantined,
            "filtered": self.filtered,
            "duplicates": self.duplicates,
            "curated": self.curated,
            "files": self.files,
            "partitions": ["/".join(p) for p in self.partitions],
            "catalog": self.catalog,
            "seconds": round(self.seconds, 3),
            **({"children": self.children} if self.children else {}),
            "quality": list(self.quality),
        }


def quarantine_objects(
    dataset: str, problems: list[bytes], now: datetime
) -> dict[str, list[bytes]]:
    """One quarantine object per raw object with problems, named after it and in its hour:
    `quarantine/<dataset>/<raw hour>/curate-<raw name>` (the run's clock only for a line
    without a raw key). A rerun after a crash, in any hour, publishes the same keys."""
    found: dict[str, list[bytes]] = {}
    for line in problems:
        raw_key = orjson.loads(line).get("raw_key") or ""
        hour = hour_of(raw_key)
        if hour is None:
            key = f"{partition_prefix(Zone.QUARANTINE, dataset, now)}curate-unknown{RAW_SUFFIX}"
        else:
            name = raw_key.rsplit("/", 1)[-1]
            key = f"{Zone.QUARANTINE}/{dataset}/{hour}/curate-{name}"
        found.setdefault(key, []).append(line)
    return found


RERUN = ".rerun-"  # `curate-<raw name>.rerun-<k>`: lines a later run quarantined besides


def _identity(line: bytes) -> tuple[str, str]:
    """A quarantine line's raw line and where it came from (its reasons may differ by run)."""
    doc = orjson.loads(line)
    return str(doc.get("raw_key") or ""), str(doc.get("line") or "")


async def publish_quarantine(
    lake: RawWriter,
    key: str,
    lines: list[bytes],
    run: int,
    publishing: Callable[[Awaitable[WriteOutcome]], Awaitable[WriteOutcome]],
) -> int:
    """Publish one raw object's quarantine lines under `key`, create-only; the objects written.

    A rerun under the same registry quarantines the same lines: `key` exists (a 412), nothing
    more. A rerun under another registry (a reprocess) can quarantine lines the first run
    curated: those not in any object already there go, create-only, to the next
    `<key stem>.rerun-<k>`, so no line is dropped and none is stored twice (a crash and rerun
    finds its own object and adds nothing)."""
    body = encode_ndjson_gz(sorted(lines))
    first = RawObject(key, body, len(lines), f"run {run}", f"run {run}")
    if await publishing(lake.put(first)) is WriteOutcome.WRITTEN:
        return 1
    stem = key.removesuffix(RAW_SUFFIX)
    seen: set[tuple[str, str]] = set()
    k = 0
    for other in [key, *await lake.keys(stem + RERUN)]:
        number = other.removeprefix(stem + RERUN).removesuffix(RAW_SUFFIX)
        if other != key and not number.isdigit():
            continue
        k = max(k, int(number) if other != key else 0)
        seen |= {_identity(line) for line in decode_ndjson_gz(await lake.get(other))}
    missing = sorted(line for line in lines if _identity(line) not in seen)
    if not missing:
        return 0
    more = RawObject(
        f"{stem}{RERUN}{k + 1}{RAW_SUFFIX}",
        encode_ndjson_gz(missing),
        len(missing),
        f"run {run}",
        f"run {run}",
    )
    return 1 if await publishing(lake.put(more)) is WriteOutcome.WRITTEN else 0


@dataclass(frozen=True, slots=True)
class ChildWritten:
    """What a run wrote of one child table (relationalize): new rows, the partitions its rows
    are in, its columns. Staged under the output named like the table."""

    table: str
    curated: int
    partitions: tuple[tuple[str, ...], ...]
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Written:
    """What a run's Spark wrote to staging (counts in records)."""

    lines: int
    quarantined: int
    filtered: int
    duplicates: int
    curated: int
    partitions: tuple[tuple[str, ...], ...]
    columns: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]  # the staging outputs this run wrote
    children: tuple[ChildWritten, ...] = ()  # child tables (relationalize)
    quality: tuple[dict[str, Any], ...] = ()  # each quality rule's result on the run's rows


@dataclass(frozen=True, slots=True)
class Prepared:
    """A run's checked, typed rows and first arrivals, persisted, with their counts."""

    rows: DataFrame
    first: DataFrame
    touched: list[tuple[str, ...]]
    lines: int
    valid: int
    kept: int
