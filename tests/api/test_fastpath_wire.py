"""Over the wire: envelopes the fast path builds around each record's own JSON text (compact,
pretty-printed over lines, \\u-escaped) are signed by the API (uvicorn) on moto's Kinesis,
verified by a real consumer process, and land in raw once each with `data` as it was sent."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import orjson

from tests.api.test_wire import SIGNING_KEY, StartApi, start_api  # noqa: F401 - the fixture
from tests.stream.test_wire import Fleet
from tributary.settings import AwsSettings
from tributary_stack import samples
from tributary_stack.inspect import read_lines, wait_consumed
from tributary_stack.moto import MotoServer


def test_fast_path_envelopes_are_verified_by_the_consumer_and_land_once(
    lake: AwsSettings,
    moto: MotoServer,
    start_api: StartApi,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    api = start_api(lake, moto.endpoint)
    compact = samples.posts(100)
    pretty = samples.posts(40, seed=7, first_id=101)
    pretty[3]["title"] = 'café ☕ "quoted" \\ back\tslash'
    invalid = {"userId": 0, "id": 999, "title": "t", "body": "b"}  # userId below its minimum
    first = api.client.post(
        "/v1/datasets/posts/records",
        content=orjson.dumps(compact),
        headers={"Content-Type": "application/json"},
    )
    second = api.client.post(
        "/v1/datasets/posts/records",
        content=json.dumps([*pretty, invalid], indent=2, ensure_ascii=True).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": "pretty-1"},
    )
    assert first.status_code == 202
    assert first.json()["accepted"] == 100
    assert second.status_code == 202
    assert second.json()["accepted"] == 40
    assert second.json()["errors"] == [
        {"index": 40, "field": "userId", "message": "must be >= 1, got 0"}
    ]
    fleet = Fleet(lake, tmp_path, ENVELOPE_SIGNING_KEY=SIGNING_KEY)
    fleet.start()
    try:
        asyncio.run(wait_consumed(lake, within=90))
    finally:
        fleet.stop()
    lines = [
        orjson.loads(line)
        for lines in asyncio.run(read_lines(lake, "raw/posts/")).values()
        for line in lines
    ]
    sent = {str(r["id"]): r for r in [*compact, *pretty]}
    assert Counter(line["id"] for line in lines) == Counter(list(sent))  # each once, no other
    for line in lines:
        assert line["source"] == "api:wire"  # trusted: the signature over the new bytes held
        assert "sig" not in line
        assert line["data"] == sent[line["id"]]
