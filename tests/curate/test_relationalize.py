"""Relationalize in the job (memory lake, local Spark): a run that dies after publishing the
child rows and before the parents, then a rerun with more raw in between, curates every order
and every line exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from tests.curate.lake import envelope, land
from tests.curate.test_job import Harness, curated_rows, harness
from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError
from tributary_curate.quality import QualityBlockedError

__all__ = ["harness"]  # the fixture, shared with test_job
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
HOUR = datetime(2026, 3, 1, 12, tzinfo=UTC)
SHIPPED = Path(__file__).parents[2] / "config" / "datasets.yaml"


def order(i: int, lines: Any) -> bytes:
    data = {"id": i, "userId": 1, "placed_at": "2026-03-01T09:00:00Z", "lines": lines}
    return envelope("orders", str(i), data)


def line(sku: str) -> dict[str, Any]:
    return {"sku": sku, "qty": 1, "price": 2.0}


async def test_crash_between_children_and_parents_then_rerun_with_more_raw(
    harness: Harness,
) -> None:
    await land(harness.lake, "orders", HOUR, "o1", [order(1, [line("A"), line("B")]), order(2, [])])
    harness.lake.denied = {"curated/orders/"}  # the parents' upload fails (AccessDenied)
    with pytest.raises(PermanentError):
        await harness.job().run(harness.registry["orders"])
    assert sorted(r["_id"] for r in curated_rows(harness.lake, "orders_lines")) == ["1#0", "1#1"]
    assert curated_rows(harness.lake, "orders") == []
    # More raw lands before the rerun: the rerun's child files differ from the first attempt's.
    await land(harness.lake, "orders", HOUR, "o2", [order(3, [None, line("C")])])
    harness.lake.denied = set()
    result = await harness.job().run(harness.registry["orders"])
    assert sorted(r["_id"] for r in curated_rows(harness.lake, "orders")) == ["1", "2", "3"]
    lines = sorted(
        (r["_id"], r["_parent_id"], r["_index"], r["sku"])
        for r in curated_rows(harness.lake, "orders_lines")
    )
    assert lines == [("1#0", "1", 0, "A"), ("1#1", "1", 1, "B"), ("3#1", "3", 1, "C")]
    assert result.children == {"orders_lines": 1}
    assert "lines" not in curated_rows(harness.lake, "orders")[0]
    assert harness.catalog.partitions["orders_lines"] == {("2026", "03", "01")}


async def test_a_resent_order_with_more_lines_adds_none(harness: Harness) -> None:
    """Order 1 again under the same envelope id, with a line more: the order is a duplicate
    (first arrival wins), so are its lines: no line without its curated order's array."""
    await land(harness.lake, "orders", HOUR, "o1", [order(1, [line("A")])])
    await harness.job().run(harness.registry["orders"])
    later = HOUR.replace(hour=13)
    await land(harness.lake, "orders", later, "o2", [order(1, [line("A"), line("B")])])
    result = await harness.job().run(harness.registry["orders"])
    assert [r["_id"] for r in curated_rows(harness.lake, "orders")] == ["1"]
    lines = sorted((r["_id"], r["sku"]) for r in curated_rows(harness.lake, "orders_lines"))
    assert lines == [("1#0", "A")]
    assert result.children == {"orders_lines": 0}


async def test_a_blocked_orders_run_curates_no_lines(spark: SparkSession, tmp_path: Path) -> None:
    """A `block` rule failing on orders stops its lines too: nothing in orders_lines, no
    partition declared, and once the rule passes the next run curates orders and lines once."""
    shipped = SHIPPED.read_text()
    assert shipped.count("{rule: RowCount > 0, on_failure: block}") >= 1
    text = shipped.replace(
        "{rule: RowCount > 0, on_failure: block}",
        "{rule: RowCount > 2, on_failure: block}",
    )
    strict = tmp_path / "datasets.yaml"
    strict.write_text(text)
    blocking = DatasetRegistry.from_file(strict)
    harness = Harness(spark, tmp_path, blocking)
    await land(harness.lake, "orders", HOUR, "o1", [order(1, [line("A"), line("B")]), order(2, [])])
    with pytest.raises(QualityBlockedError):
        await harness.job().run(blocking["orders"])
    assert curated_rows(harness.lake, "orders_lines") == []
    assert curated_rows(harness.lake, "orders") == []
    assert "orders_lines" not in harness.catalog.partitions
    result = await harness.job().run(DatasetRegistry.from_file(SHIPPED)["orders"])
    assert result.children == {"orders_lines": 2}
