"""A leader-mode worker (`python -m tributary_stream`, LEASE_ASSIGNMENT=leader) on a lease table
made before the leaseOwner GSI stops at once with exit code 2 and says why, instead of backing
off forever (issue 18 review: every owner-index query failed and coordination retried)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import lake_settings
from tests.stream.test_wire import Fleet
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary_stack.moto import MotoServer


async def test_a_worker_on_a_table_without_the_owner_index_exits_2(
    moto: MotoServer, tmp_path: Path
) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    async with AwsClients(lake) as clients:
        db = await clients.dynamodb()
        await db.delete_table(TableName=lake.lease_table)
        await db.create_table(  # as bootstrap made it before issue 18
            TableName=lake.lease_table,
            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    fleet = Fleet(lake, tmp_path, LEASE_ASSIGNMENT="leader")
    worker = fleet.start()
    try:
        exited = await asyncio.to_thread(worker.wait, 30)
    finally:
        code = worker.stop(timeout=10)
        fleet.stop()
    assert exited, "the worker kept running (backing off) on a table without the index"
    assert code == 2
    log = (tmp_path / "worker-1.log").read_text()
    assert "no usable leaseOwner-index GSI" in log
    assert "coordination cycle failed" not in log
