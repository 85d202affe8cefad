"""The consumer's id for a bare record of a dataset with a `version_field`: `<id>@<version>`,
spelled as the API spells it; an unsigned look-alike envelope still gets the consumer's own id."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from tributary.dataset import DatasetRegistry
from tributary_stream.route import Router
from tributary_stream.stream import Record

ARRIVAL = datetime(2026, 3, 1, 12, tzinfo=UTC)


def routed(registry: DatasetRegistry, data: dict[str, object], sequence: str = "1000") -> str:
    router = Router(registry, "kinesis:test", "items", signing_key=b"k" * 32)
    _, line = router.route("shardId-0", Record(sequence, 0, "7", orjson.dumps(data), ARRIVAL))
    return str(orjson.loads(line)["id"])


def test_bare_versions_get_versioned_ids(registry: DatasetRegistry) -> None:
    item = {"id": 7, "name": "w", "updated_at": "2026-03-01T13:00:00+02:00"}
    assert routed(registry, item) == "7@2026-03-01T11:00:00Z"
    assert routed(registry, {**item, "updated_at": "2026-03-01T11:00:00Z"}, "1001") == (
        "7@2026-03-01T11:00:00Z"  # one version, another spelling, another sequence: one id
    )
    assert routed(registry, {**item, "updated_at": "2026-03-01T12:00:00Z"}) == (
        "7@2026-03-01T12:00:00Z"
    )
    api_id = registry["items"].envelope_id(item)
    assert routed(registry, item) == api_id  # what the API gives the same version
    forged = {"v": 1, "dataset": "items", "id": "7@x", "data": item}
    assert routed(registry, forged) == "shardId-0-1000"  # an unsigned envelope claims nothing
