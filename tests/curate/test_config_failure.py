"""One dataset's bad `curated:` config (a filter that does not parse, a cast to no type) is
reported with its name and reason (exit 2), recorded for `make status`, and every other dataset
still runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession

from tests.conftest import DATASETS_CONFIG, lake_settings
from tests.curate.lake import envelope, land, post
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary_curate.runner import Lake, curate_datasets, staging_factory
from tributary_curate.settings import CurateSettings
from tributary_stack.moto import MotoServer
from tributary_stack.status import status

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
HOUR = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
async def settings(moto: MotoServer, tmp_path: Path) -> CurateSettings:
    aws = lake_settings(moto.endpoint)
    await bootstrap(aws, shards=1)
    config = yaml.safe_load(DATASETS_CONFIG.read_text())
    config["datasets"]["comments"]["curated"]["filter"] = "post_id >"  # does not parse
    config["datasets"]["items"]["curated"]["cast"] = {"price": "no_such_type"}
    # Parses, and fails only once Spark runs it (Py4JJavaError, PatternSyntaxException).
    config["datasets"]["events"]["curated"]["filter"] = "type rlike '['"
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump(config))
    return CurateSettings.model_validate(
        {
            "AWS_ENDPOINT_URL": aws.aws_endpoint_url,
            "LAKE_BUCKET": aws.lake_bucket,
            "GLUE_DATABASE": aws.glue_database,
            "STREAM_NAME": aws.stream_name,
            "LEASE_TABLE": aws.lease_table,
            "STATE_TABLE": aws.state_table,
            "DATASETS_CONFIG": str(path),
            "AWS_MAX_ATTEMPTS": 2,
        }
    )


async def test_bad_config_is_reported_and_the_other_datasets_still_run(
    settings: CurateSettings,
    spark: SparkSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = DatasetRegistry.from_file(settings.datasets_config)
    item = {"id": 1, "name": "x", "price": 2.5, "updated_at": "2026-03-01T10:00:00Z"}
    comment = {"postId": 1, "id": 1, "email": "a@b.c", "body": "hi"}
    async with AwsClients(settings) as clients:
        lake = await Lake.open(clients, settings)
        await land(lake.writer, "comments", HOUR, "c1", [envelope("comments", "1", comment)])
        await land(lake.writer, "items", HOUR, "i1", [envelope("items", "1", item)])
        await land(lake.writer, "posts", HOUR, "p1", [envelope("posts", "1", post(1))])
        event = envelope("events", "e1", {"type": "click", "id": "e1"})
        await land(lake.writer, "events", HOUR, "e1", [event])
        results, code = await curate_datasets(
            spark,
            settings,
            registry,
            ["comments", "events", "items", "posts"],
            lake,
            staging_factory(settings, lake, tmp_path, on_glue=False),
        )
        assert code == 2
        asked = {"comments", "events", "items", "posts"}  # snapshot tables report too (0 rows)
        assert [(r.dataset, r.curated) for r in results if r.dataset in asked] == [("posts", 1)]
        err = capsys.readouterr().err
        assert "comments: failed: curated config or transform of comments failed" in err
        assert "items: failed: curated config or transform of items failed" in err
        assert "no_such_type" in err.lower()
        assert "events: failed: curated config or transform of events failed" in err
        assert "java.util.regex.PatternSyntaxException" in err
        mark = await lake.bookmarks.get("events")
        assert "PatternSyntaxException" in mark.last_error["reason"]
        assert await lake.writer.keys("curated/events/") == []
        assert await lake.writer.keys("curated/comments/") == []
        mark = await lake.bookmarks.get("comments")
        assert mark.runs == 0
        assert "curated config or transform of comments failed" in mark.last_error["reason"]
        assert await lake.claims.read("comments") is None
        assert await lake.writer.keys("_staging/") == []
    shown = await status(settings, [])
    failures = shown.split("Curate failures")[1].split("\n\n")[0]  # that table, not the next
    assert "comments" in failures
    assert "items" in failures
    assert "events" in failures
    assert "posts" not in failures
