"""What a run lists and what it remembers: an hour watermark plus a late-arrival window.

Raw keys sort by ingestion hour, so listing from `raw/<dataset>/<since>` on (S3 `StartAfter`)
sees every hour from the watermark to now. After a run the watermark moves to `late_hours`
before the newest hour seen; the keys of hours from there on stay in the bookmark, so an object
that lands late in one of them is still new. An object landing more than `late_hours` behind
the newest hour already curated is not listed again: set `CURATE_LATE_HOURS` above the longest
delay a writer can have (the stream's retention for a lagging consumer), or
`bookmark reset` the dataset (the anti-join keeps the rerun free of duplicates).

The watermark follows the newest hour listed only up to the run's own hour plus one: a raw key
in a later hour (a writer whose clock runs ahead) is curated and reported (`future_keys`), but
it does not move the watermark past objects that have yet to land.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tributary.layout import RAW_SUFFIX, Zone
from tributary_curate.bookmark import Bookmark
from tributary_curate.index import LakeIndex

DEFAULT_LATE_HOURS = 72
_HOUR = re.compile(r"/(year=\d{4}/month=\d{2}/day=\d{2}/hour=\d{2})/")
_FORMAT = "year=%Y/month=%m/day=%d/hour=%H"


@dataclass(frozen=True, slots=True)
class Listing:
    """The raw keys a run listed (from the watermark on) and those of them not yet curated."""

    listed: frozenset[str]
    new: tuple[str, ...]


def hour_of(key: str) -> str | None:
    """`year=…/month=…/day=…/hour=…` of a raw key (None for a key outside the layout)."""
    found = _HOUR.search(key)
    return found.group(1) if found else None


async def list_new(index: LakeIndex, bookmark: Bookmark) -> Listing:
    """List raw from the bookmark's watermark on; what is new."""
    prefix = f"{Zone.RAW}/{bookmark.dataset}/"
    start_after = f"{prefix}{bookmark.since}" if bookmark.since else None
    listed = frozenset(
        k for k in await index.keys_after(prefix, start_after) if k.endswith(RAW_SUFFIX)
    )
    return Listing(listed, tuple(sorted(listed - bookmark.processed)))


def latest_hour(now: datetime) -> str:
    """The newest hour a run at `now` trusts: its own hour plus one (clock skew)."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return (hour + timedelta(hours=1)).strftime(_FORMAT)


def future_keys(listing: Listing, now: datetime) -> tuple[str, ...]:
    """The new keys in an hour after `latest_hour(now)`: their writer's clock runs ahead."""
    latest = latest_hour(now)
    return tuple(k for k in listing.new if (hour_of(k) or "") > latest)


def advance(
    bookmark: Bookmark, listing: Listing, late_hours: int, now: datetime
) -> tuple[str | None, frozenset[str]]:
    """The watermark and processed keys once `listing.new` is curated (by a run at `now`): keys
    that left raw (expired) and hours before the new watermark are forgotten. Hours after
    `latest_hour(now)` do not move the watermark."""
    done = (bookmark.processed & listing.listed) | set(listing.new)
    latest = latest_hour(now)
    hours = [h for h in map(hour_of, listing.listed) if h]
    if not hours:
        return bookmark.since, frozenset(done)
    newest = datetime.strptime(min(max(hours), latest), _FORMAT).replace(tzinfo=UTC)
    since = (newest - timedelta(hours=late_hours)).strftime(_FORMAT)
    if bookmark.since and bookmark.since > since:
        since = bookmark.since  # never moves back
    return since, frozenset(k for k in done if (hour_of(k) or since) >= since)
