"""What a curate run did, and where its quarantined lines go."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from tributary.layout import RAW_SUFFIX, Zone, partition_prefix
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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A run's checked, typed rows and first arrivals, persisted, with their counts."""

    rows: DataFrame
    first: DataFrame
    touched: list[tuple[str, ...]]
    lines: int
    valid: int
    kept: int
