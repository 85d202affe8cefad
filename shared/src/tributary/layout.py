"""Object keys of the lake: Hive-style partitions of ingestion time (UTC).

`<zone>/<dataset>/year=YYYY/month=MM/day=DD/hour=HH/<writer>-<batch id>.ndjson.gz`
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from tributary.dataset import DATASET_NAME

RAW_SUFFIX = ".ndjson.gz"
_TOKEN = re.compile(r"^[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*$")
_KEY = re.compile(
    r"^(?P<zone>[a-z_]+)/(?P<dataset>[a-z][a-z0-9_]*)/year=(?P<year>\d{4})/month=(?P<month>\d{2})"
    r"/day=(?P<day>\d{2})/hour=(?P<hour>\d{2})/(?P<name>[^/]+)\.ndjson\.gz$"
)


class Zone(StrEnum):
    """Top-level prefixes of the lake bucket."""

    RAW = "raw"
    QUARANTINE = "quarantine"
    CURATED = "curated"


def partition_prefix(zone: Zone, dataset: str, at: datetime) -> str:
    """`raw/posts/year=2026/month=11/day=26/hour=20/` for `at` (converted to UTC)."""
    if not DATASET_NAME.match(dataset):
        raise ValueError(f"invalid dataset name {dataset!r}")
    t = at.astimezone(UTC)
    return f"{zone}/{dataset}/year={t:%Y}/month={t:%m}/day={t:%d}/hour={t:%H}/"


def object_key(zone: Zone, dataset: str, at: datetime, writer: str, batch_id: str) -> str:
    """The key of one batch object; `writer` and `batch_id` are `[A-Za-z0-9_.-]` tokens."""
    for label, token in (("writer", writer), ("batch id", batch_id)):
        if not _TOKEN.match(token):
            raise ValueError(f"{label} {token!r} must be letters, digits, '_', '.', '-'")
    return f"{partition_prefix(zone, dataset, at)}{writer}-{batch_id}{RAW_SUFFIX}"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """The parts of a lake object key."""

    zone: str
    dataset: str
    hour: datetime
    name: str


def parse_key(key: str) -> ParsedKey | None:
    """Split a key made by `object_key`; None for anything else."""
    m = _KEY.match(key)
    if m is None:
        return None
    hour = datetime(int(m["year"]), int(m["month"]), int(m["day"]), int(m["hour"]), tzinfo=UTC)
    return ParsedKey(m["zone"], m["dataset"], hour, m["name"])
