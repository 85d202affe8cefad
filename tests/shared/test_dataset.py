from __future__ import annotations

import pytest

from tributary.dataset import DatasetRegistry
from tributary.errors import ConfigError


def test_example_registry(registry: DatasetRegistry) -> None:
    posts = registry["posts"]
    assert posts.id_field == "id"
    assert posts.record_id({"id": 7}) == "7"
    assert posts.partition_key_for({"userId": 3}, "7") == "3"
    assert posts.partition_key_for({}, "7") == "7"
    events = registry["events"]
    assert events.record_id({"type": "x"}) is None
    assert events.record_id({"type": "x", "id": "e1"}) == "e1"
    assert events.validator.errors({"id": "e1"})[0].field == "type"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datasets: {Bad-Name: {}}", "dataset name 'Bad-Name' must match"),
        (
            "datasets: {a: {schema: {fields: {x: {type: strng}}}}}",
            "datasets.a.schema.fields.x.type",
        ),
        ("datasets: {a: {limits: {max_record_bytes: 99999999}}}", "max_record_bytes"),
        ("datasets: {a: {id_feild: x}}", "id_feild"),
        ("datasets: [", "not valid YAML"),
    ],
)
def test_bad_registry_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DatasetRegistry.from_yaml(text, "test.yaml")


def test_missing_file_points_at_the_setting(tmp_path: object) -> None:
    from pathlib import Path

    with pytest.raises(ConfigError, match="set DATASETS_CONFIG"):
        DatasetRegistry.from_file(Path("/nonexistent/datasets.yaml"))
