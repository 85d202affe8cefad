from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary.layout import Zone, object_key, parse_key


def test_key_is_hive_partitioned_by_utc_hour() -> None:
    at = datetime(2026, 3, 4, 1, 30, tzinfo=timezone(timedelta(hours=2)))  # 23:30 UTC the 3rd
    key = object_key(Zone.RAW, "posts", at, "api", "abc123")
    assert key == "raw/posts/year=2026/month=03/day=03/hour=23/api-abc123.ndjson.gz"


@pytest.mark.parametrize(("writer", "batch"), [("a/b", "x"), ("api", "x y"), ("", "x")])
def test_bad_tokens_are_refused(writer: str, batch: str) -> None:
    with pytest.raises(ValueError, match="must be letters"):
        object_key(Zone.RAW, "posts", datetime.now(UTC), writer, batch)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
    ),
    st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    st.from_regex(r"shardId-[0-9]{12}", fullmatch=True),
    st.from_regex(r"[0-9]{1,56}", fullmatch=True),
)
def test_parse_inverts_object_key(at: datetime, dataset: str, writer: str, batch: str) -> None:
    parsed = parse_key(object_key(Zone.QUARANTINE, dataset, at, writer, batch))
    assert parsed is not None
    assert (parsed.zone, parsed.dataset, parsed.name) == (
        "quarantine",
        dataset,
        f"{writer}-{batch}",
    )
    assert parsed.hour == at.replace(minute=0, second=0, microsecond=0)
