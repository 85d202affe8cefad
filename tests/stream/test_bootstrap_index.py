"""A lease table from before the leaseOwner GSI (bootstrap skips a table that exists) gets the
index from bootstrap, so leader-mode workers can query their leases."""

from __future__ import annotations

from tests.conftest import lake_settings
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary_stack.moto import MotoServer
from tributary_stream.lease import Checkpoint, Lease
from tributary_stream.lease_table import DynamoDbLeaseStore


async def test_bootstrap_adds_the_owner_index_to_an_older_lease_table(moto: MotoServer) -> None:
    settings = lake_settings(moto.endpoint)
    async with AwsClients(settings) as clients:
        db = await clients.dynamodb()
        await db.create_table(  # as bootstrap made it before issue 18
            TableName=settings.lease_table,
            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        await bootstrap(settings, shards=1)
        store = DynamoDbLeaseStore(db, settings.lease_table)
        lease = Lease("shardId-000000000000", None, 0, Checkpoint.TRIM_HORIZON)
        assert await store.create(lease)
        assert await store.take(lease, "w1") is not None
        assert await store.list_owned("w1") == ["shardId-000000000000"]
