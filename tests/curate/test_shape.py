"""A dataset's curated table with no rows (`shape.no_rows`, a left join's right side before its
first curate run) has the columns and types its curated files have once it is curated: checked
for every shipped dataset against its files read back (memory lake, local Spark)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from tests.curate.lake import envelope, land, post
from tests.curate.test_job import Harness
from tributary.dataset import DatasetRegistry
from tributary.version import canonical_instant, versioned_id
from tributary_curate.current import without_partitions
from tributary_curate.shape import no_rows

pytestmark = [
    pytest.mark.timeout(900),  # six curate runs on a loaded machine
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]
HOUR = datetime(2026, 3, 1, 12, tzinfo=UTC)
SHIPPED = Path(__file__).parents[2] / "config" / "datasets.yaml"
AT = "2026-03-01T12:00:00Z"
USER = {
    "id": 1, "name": "Ann", "username": "ann", "email": "a@example.test", "phone": "1",
    "address": {"city": "Oslo", "geo": {"lat": "1", "lng": "2"}}, "company": {"name": "Co"},
    "updated_at": AT,
}  # fmt: skip
SAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "posts": ("1", post(1)),
    "events": ("e1", {"type": "click", "id": "e1", "user": "u1", "props": {"a": 1}}),
    "comments": ("1", {"postId": 1, "id": 1, "email": "c@example.test", "body": "b"}),
    "items": (
        versioned_id("1", canonical_instant(AT)),
        {"id": 1, "name": "n", "price": 1.5, "updated_at": AT},
    ),
    "users": (versioned_id("1", canonical_instant(AT)), USER),
    "orders": (
        "1",
        {
            "id": 1,
            "userId": 1,
            "placed_at": AT,
            "status": "paid",
            "lines": [{"sku": "a", "qty": 1, "price": 2.0}],
        },
    ),
}


@pytest.mark.parametrize("spark_rules", [False, True], ids=["python-rules", "spark-rules"])
async def test_no_rows_has_the_columns_and_types_of_the_curated_files(
    spark: SparkSession, tmp_path: Path, spark_rules: bool
) -> None:
    """Whichever way the curate run validated its lines (`check_lines(spark_rules=...)`)."""
    registry = DatasetRegistry.from_file(SHIPPED)
    assert set(SAMPLES) == set(registry), "a sample record for every shipped dataset"
    harness = Harness(spark, tmp_path, registry)
    for name, (record_id, data) in SAMPLES.items():
        await land(harness.lake, name, HOUR, "b", [envelope(name, record_id, data, AT)])
        result = await harness.job(spark_rules=spark_rules).run(registry[name])
        assert result.curated == 1, name
        folder = tmp_path / "files" / name
        for key, obj in harness.lake.objects.items():
            if key.startswith(f"curated/{name}/") and key.endswith(".parquet"):
                (folder / key).parent.mkdir(parents=True, exist_ok=True)
                (folder / key).write_bytes(obj.body)
        files = [str(p) for p in folder.rglob("*.parquet")]
        read = without_partitions(spark.read.option("mergeSchema", "true").parquet(*files))
        empty = without_partitions(no_rows(spark, registry[name]))
        expected = [(f.name, f.dataType.simpleString()) for f in read.schema.fields]
        assert [(f.name, f.dataType.simpleString()) for f in empty.schema.fields] == expected
        assert empty.count() == 0
