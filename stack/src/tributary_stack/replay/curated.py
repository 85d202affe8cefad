"""What curate already holds, as its anti-join sees it: the ids in a dataset's curated day
partitions (and the dedupe look-back days before), and the day a record is placed in."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq

from tributary.dataset import Dataset
from tributary.layout import Zone
from tributary.raw_writer import RawWriter

ID_COLUMN = "_id"  # the envelope id in curated (tributary_curate.transform.ID)
RECEIVED_AT = "_received_at"  # the envelope's arrival in curated (the default partition_by)
DAY_FORMAT = "year=%Y/month=%m/day=%d"


class CuratedIds:
    """The ids of curated day partitions, each day read once (one command's reads)."""

    def __init__(self, lake: RawWriter) -> None:
        self._lake = lake
        self._days: dict[str, set[str]] = {}  # curated day prefix → its ids

    async def day(self, dataset: str, day: str) -> set[str]:
        """The ids curated in `curated/<dataset>/<day>/` (`day`: `year=…/month=…/day=…`)."""
        prefix = f"{Zone.CURATED}/{dataset}/{day}/"
        if prefix not in self._days:
            found: set[str] = set()
            for key in await self._lake.keys(prefix):
                if key.endswith(".parquet"):
                    body = await self._lake.get(key)
                    found.update(await asyncio.to_thread(_ids, body))
            self._days[prefix] = found
        return self._days[prefix]

    async def seen_from(self, dataset: Dataset, day: str) -> set[str]:
        """The ids curate's anti-join drops from rows placed in `day`: those curated in it or
        in the dedupe look-back days before it."""
        seen: set[str] = set()
        for back in _lookback(day, dataset.curated.dedupe_lookback_days):
            seen |= await self.day(dataset.name, back)
        return seen


def partition_of(dataset: Dataset, doc: dict[str, Any]) -> str | None:
    """`year=YYYY/month=MM/day=DD` (UTC) of the record's `partition_by` timestamp, as curate's
    `with_partitions` places it; None when it has none (curate quarantines the record)."""
    by = dataset.curated.partition_by
    if by == RECEIVED_AT:
        value: Any = doc.get("received_at")
    else:
        source = {target: src for src, target in dataset.curated.rename.items()}.get(by, by)
        value = _field(doc.get("data"), source)
    at = _timestamp(value)
    return None if at is None else at.strftime(DAY_FORMAT)


def _field(data: Any, name: str) -> Any:
    """A data field by its curated (flattened: `parent_child`) name."""
    if not isinstance(data, dict):
        return None
    if name in data:
        return data[name]
    head, _, rest = name.partition("_")
    return _field(data.get(head), rest) if rest else None


def _timestamp(value: Any) -> datetime | None:
    """Spark's cast to a timestamp, for the forms records carry: ISO-8601 text, epoch seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        try:
            at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    return None


def _lookback(day: str, days: int) -> list[str]:
    at = datetime.strptime(day, DAY_FORMAT).replace(tzinfo=UTC)
    return [(at - timedelta(days=n)).strftime(DAY_FORMAT) for n in range(days + 1)]


def _ids(parquet: bytes) -> list[str]:
    """The envelope ids (`_id`, the anti-join's column) of one curated file."""
    table = pq.read_table(io.BytesIO(parquet), columns=[ID_COLUMN])
    return [str(value) for value in table.column(ID_COLUMN).to_pylist()]
