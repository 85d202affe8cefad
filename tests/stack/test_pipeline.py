"""The whole pipeline over the wire, on the embedded stack: producers POST to the API (uvicorn),
two stream-consumer processes land Kinesis in raw, the importer pulls the fake third-party API,
the curate job (Spark, its command line) promotes raw to curated Parquet with the registry's
mapping. Every accepted or imported record comes out in curated exactly once; every invalid one
sits in quarantine with its reasons."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest

from tests.stack.conftest import stack_settings
from tributary.aws import AwsClients
from tributary.envelope import Envelope
from tributary.settings import AwsSettings
from tributary_stack import samples
from tributary_stack.demo import run_curate, run_importer
from tributary_stack.inspect import read_lines, read_parquet, wait_consumed
from tributary_stack.stack import LocalStack

pytestmark = pytest.mark.timeout(420)


def post(stack: LocalStack, dataset: str, body: bytes, **headers: str) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.api_url}/v1/datasets/{dataset}/records",
        content=body,
        headers={
            "Authorization": f"Bearer {stack.settings.api_key}",
            "Content-Type": "application/json",
            **headers,
        },
        timeout=30,
    )
    assert response.status_code in (202, 422), response.text
    result: dict[str, Any] = response.json()
    return result


def curated_tables(aws: AwsSettings, dataset: str) -> dict[str, pa.Table]:
    return asyncio.run(read_parquet(aws, f"curated/{dataset}/"))


def glue_columns(aws: AwsSettings, table: str) -> list[tuple[str, str]]:
    async def get() -> list[tuple[str, str]]:
        async with AwsClients(aws) as clients:
            glue = await clients.glue()
            found = await glue.get_table(DatabaseName=aws.glue_database, Name=table)
        return [(c["Name"], c["Type"]) for c in found["Table"]["StorageDescriptor"]["Columns"]]

    return asyncio.run(get())


def test_posted_and_imported_records_reach_curated_once_with_the_mapped_schema(
    tmp_path: Path,
) -> None:
    with (
        (tmp_path / "services.log").open("w") as log,
        LocalStack(stack_settings(tmp_path), out=log, log_level="WARNING") as stack,
    ):
        aws = stack.aws_settings()
        # Producers: posts (a retried request and a mixed one), events as gzip NDJSON with
        # undeclared fields, and an item whose price the curated decimal(10,2) cannot hold.
        posts = orjson.dumps(samples.posts(40, first_id=1001))
        first = post(stack, "posts", posts, **{"Idempotency-Key": "e2e-posts-1"})
        retried = post(stack, "posts", posts, **{"Idempotency-Key": "e2e-posts-1"})
        assert retried["ids"] == first["ids"]
        mixed = post(
            stack,
            "posts",
            orjson.dumps(
                [
                    {"userId": 0, "id": 2001, "title": "t", "body": "b"},  # userId minimum 1
                    {"userId": 1, "id": 2002, "title": "fine", "body": "b"},
                    {"userId": 1, "id": "2003", "title": "t"},  # id not integer, no body
                ]
            ),
        )
        assert (mixed["accepted"], mixed["rejected"]) == (1, 2)
        assert {(e["index"], e["field"]) for e in mixed["errors"]} == {
            (0, "userId"),
            (2, "id"),
            (2, "body"),
        }
        events: list[Any] = samples.events(20)
        events[5] = {"props": {"n": 5}}  # no type
        ndjson = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events))
        sent_events = post(
            stack,
            "events",
            ndjson,
            **{"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        )
        assert (sent_events["accepted"], sent_events["rejected"]) == (19, 1)
        too_dear = {
            "id": 9001,
            "name": "yacht",
            "price": 1e12,
            "updated_at": "2026-02-03T04:05:06Z",
        }
        assert post(stack, "items", orjson.dumps(too_dear))["accepted"] == 1

        imported = run_importer(stack)
        assert {"posts", "comments", "items", "users", "orders"} <= set(imported)
        asyncio.run(wait_consumed(aws, within=120))
        raw = asyncio.run(read_lines(aws, "raw/"))
        from_importer: dict[str, Counter[str]] = defaultdict(Counter)
        for lines in raw.values():
            for line in lines:
                envelope = Envelope.from_json(line)
                if envelope.source.startswith("importer:"):
                    from_importer[envelope.dataset][envelope.id] += 1
        landed = sum(sum(c.values()) for c in from_importer.values())
        assert landed == sum(imported.values())  # what each source said it landed (by source)

        counts = run_curate(stack)

        # Exactly once: every id the API acknowledged or the importer landed, nothing else.
        expected = {
            "posts": {*first["ids"], *mixed["ids"], *from_importer["posts"]},
            "events": {*sent_events["ids"], *from_importer["events"]},  # + events_windowed
            "comments": set(from_importer["comments"]),
            "items": set(from_importer["items"]),  # the API's yacht is quarantined
        }
        for dataset, ids in expected.items():
            tables = curated_tables(aws, dataset)
            seen = Counter(i for t in tables.values() for i in t.column("_id").to_pylist())
            assert set(seen) == ids, dataset
            assert max(seen.values()) == 1, f"{dataset}: duplicated {seen.most_common(3)}"
            assert counts[dataset]["curated"] == len(ids)
        again = from_importer["posts"]  # several shipped sources land the same posts
        assert counts["posts"]["duplicates"] == 40 + sum(again.values()) - len(again)  # + retry

        # The mapped schema, in the files and in the Glue catalog.
        envelope_columns = [("_id", "string"), ("_source", "string"), ("_received_at", "timestamp")]
        assert glue_columns(aws, "comments") == [
            *envelope_columns,
            ("post_id", "bigint"),
            ("id", "bigint"),
            ("author_email", "string"),
            ("body", "string"),
        ]
        assert glue_columns(aws, "events") == [
            *envelope_columns,
            ("type", "string"),
            ("id", "string"),
            ("_extra", "map<string,string>"),
        ]
        items = curated_tables(aws, "items")
        assert glue_columns(aws, "items")[3:] == [
            ("id", "bigint"),
            ("name", "string"),
            ("price", "decimal(10,2)"),
            ("updated_at", "timestamp"),
        ]
        for key, table in items.items():  # partitioned by when the item changed
            assert table.schema.field("price").type == pa.decimal128(10, 2)
            for changed in table.column("updated_at").to_pylist():
                assert f"year={changed:%Y}/month={changed:%m}/day={changed:%d}/" in key
        sent = set(sent_events["ids"])  # the API's events (events_windowed's have no extras)
        extra = [
            dict(row["_extra"])
            for t in curated_tables(aws, "events").values()
            for row in t.select(["_id", "_extra"]).to_pylist()
            if row["_id"] in sent
        ]
        assert all(row["user"].startswith("u") for row in extra)  # strings as they are
        assert {orjson.loads(row["props"])["n"] for row in extra} == set(range(20)) - {5}

        # Quarantine: the API's rejects (index + field) and curate's (the failed cast).
        quarantine = asyncio.run(read_lines(aws, "quarantine/"))
        reasons: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for key, lines in quarantine.items():
            for line in lines:
                problem = orjson.loads(line)
                fields = tuple(sorted(e["field"] for e in problem["errors"]))
                reasons[key.split("/")[1]].append((problem.get("index"), fields))
                assert all(e["message"] for e in problem["errors"])
        assert sorted(reasons["posts"]) == [(0, ("userId",)), (2, ("body", "id"))]
        assert reasons["events"] == [(5, ("type",))]
        assert reasons["items"] == [(None, ("price",))]
        assert counts["items"]["quarantined"] == 1
