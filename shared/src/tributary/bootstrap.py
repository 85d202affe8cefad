"""Create the lake's resources (idempotently), as the Copilot environment addons do on AWS.

`python -m tributary.bootstrap [--shards N]` does it for the settings in the environment (the
docker compose one-shot service); the embedded stack and the tests call `bootstrap()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from tributary.aws import AwsClients, error_code
from tributary.settings import AwsSettings

log = logging.getLogger(__name__)

OWNER_INDEX = "leaseOwner-index"  # the stream consumer's lease.OWNER_INDEX

_EXISTS = frozenset(
    {
        "BucketAlreadyOwnedByYou",
        "BucketAlreadyExists",
        "ResourceInUseException",
        "AlreadyExistsException",
    }
)


async def bootstrap(
    settings: AwsSettings, shards: int, crawlers: Mapping[str, str] | None = None
) -> None:
    """Bucket, Kinesis stream (waits until ACTIVE), lease and state tables, Glue database, and
    the curated crawlers (name → dataset), new folders only as the deploy's addon makes them."""
    async with AwsClients(settings) as clients:
        s3, kinesis, dynamodb, glue = (
            await clients.s3(),
            await clients.kinesis(),
            await clients.dynamodb(),
            await clients.glue(),
        )
        async with _exists_ok("bucket", settings.lake_bucket):
            await s3.create_bucket(Bucket=settings.lake_bucket)
        async with _exists_ok("stream", settings.stream_name):
            await kinesis.create_stream(StreamName=settings.stream_name, ShardCount=shards)
        async with _exists_ok("table", settings.lease_table):
            await dynamodb.create_table(  # as lake.yml: the leaseOwner GSI of KCL 3.x
                TableName=settings.lease_table,
                KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                AttributeDefinitions=[
                    {"AttributeName": "leaseKey", "AttributeType": "S"},
                    {"AttributeName": "leaseOwner", "AttributeType": "S"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": OWNER_INDEX,
                        "KeySchema": [{"AttributeName": "leaseOwner", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        await _owner_index(dynamodb, settings.lease_table)
        async with _exists_ok("table", settings.fleet_table):
            await dynamodb.create_table(  # as lake.yml: one row, the consumers' fleet
                TableName=settings.fleet_table,
                KeySchema=[{"AttributeName": "fleetKey", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "fleetKey", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        async with _exists_ok("table", settings.state_table):
            await dynamodb.create_table(
                TableName=settings.state_table,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        async with _exists_ok("glue database", settings.glue_database):
            await glue.create_database(DatabaseInput={"Name": settings.glue_database})
        for name, dataset in (crawlers or {}).items():
            async with _exists_ok("crawler", name):
                await glue.create_crawler(
                    Name=name,
                    Role="arn:aws:iam::123456789012:role/tributary-crawler",
                    DatabaseName=settings.glue_database,
                    Targets={
                        "S3Targets": [{"Path": f"s3://{settings.lake_bucket}/curated/{dataset}/"}]
                    },
                    RecrawlPolicy={"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"},
                    SchemaChangePolicy={"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"},
                )
        for _ in range(200):
            summary = await kinesis.describe_stream_summary(StreamName=settings.stream_name)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"stream {settings.stream_name} did not become ACTIVE")


async def _owner_index(dynamodb: Any, table: str) -> None:
    """A lease table from before the `leaseOwner-index` GSI gets it (UpdateTable), and
    bootstrap waits until the index is ACTIVE (DynamoDB backfills it first)."""
    for _ in range(600):
        described = (await dynamodb.describe_table(TableName=table))["Table"]
        indexes = {i["IndexName"]: i for i in described.get("GlobalSecondaryIndexes", [])}
        index = indexes.get(OWNER_INDEX)
        if index is None:
            await dynamodb.update_table(
                TableName=table,
                AttributeDefinitions=[{"AttributeName": "leaseOwner", "AttributeType": "S"}],
                GlobalSecondaryIndexUpdates=[
                    {
                        "Create": {
                            "IndexName": OWNER_INDEX,
                            "KeySchema": [{"AttributeName": "leaseOwner", "KeyType": "HASH"}],
                            "Projection": {"ProjectionType": "KEYS_ONLY"},
                        }
                    }
                ],
            )
            log.info("index added", extra={"resource": f"{table}/{OWNER_INDEX}"})
        elif index.get("IndexStatus", "ACTIVE") == "ACTIVE":
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"index {table}/{OWNER_INDEX} did not become ACTIVE")


class _exists_ok:
    """Swallow 'already exists' errors: bootstrap may run against a stack that has them."""

    def __init__(self, kind: str, name: str) -> None:
        self._what = f"{kind} {name}"

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, ClientError) and error_code(exc) in _EXISTS:
            log.info("exists", extra={"resource": self._what})
            return True
        if exc is None:
            log.info("created", extra={"resource": self._what})
        return False


def main() -> None:
    """Entry point: bootstrap the resources named by the environment, crawlers included."""
    import argparse
    from pathlib import Path

    from tributary.dataset import DatasetRegistry
    from tributary.log import configure_logging
    from tributary.settings import CommonSettings

    parser = argparse.ArgumentParser(prog="python -m tributary.bootstrap", description=__doc__)
    parser.add_argument("--shards", type=int, default=4, help="Kinesis shards (new stream only)")
    args = parser.parse_args()
    settings = CommonSettings()
    configure_logging("bootstrap", settings.log_level)
    registry = DatasetRegistry.from_file(Path(settings.datasets_config))
    crawlers = {settings.crawler_for(name): name for name in registry}
    asyncio.run(bootstrap(settings, args.shards, crawlers))


if __name__ == "__main__":
    main()
