"""A rewind process SIGKILLed while it waits for an owner to release: its hold is short and
was only kept alive by the rewind, so the shard is taken again at most `HOLD_S` later (not
after the release timeout plus a margin). On moto, with the real `python -m tributary_stack`
process; the owner is a dead worker that never answers."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.stack.test_rewind import cli_env
from tributary.aws import AwsClients
from tributary.clock import SystemClock
from tributary.settings import AwsSettings
from tributary_stack.process import ManagedProcess
from tributary_stack.replay.rewind import HOLD_S
from tributary_stream.lease import Checkpoint, Lease
from tributary_stream.lease_table import DynamoDbLeaseStore


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


async def dead_owner(lake: AwsSettings) -> str:
    """A shard with records whose lease a dead worker owns, checkpointed past them."""
    async with AwsClients(lake) as clients:
        kinesis = await clients.kinesis()
        last: dict[str, str] = {}
        for i in range(10):
            put = await kinesis.put_record(
                StreamName=lake.stream_name, Data=b'{"i": %d}' % i, PartitionKey="k"
            )
            last[put["ShardId"]] = put["SequenceNumber"]
        [(shard, sequence)] = last.items()
        store = DynamoDbLeaseStore(await clients.dynamodb(), lake.lease_table)
        await store.create(Lease(shard, None, 0, Checkpoint.TRIM_HORIZON))
        lease = await store.get(shard)
        assert lease is not None
        taken = await store.take(lease, "w-dead")
        assert taken is not None
        assert await store.checkpoint(taken, sequence, {}) is not None
    return shard


async def row(lake: AwsSettings, shard: str, clock: FixedClock | None = None) -> Lease:
    async with AwsClients(lake) as clients:
        store = DynamoDbLeaseStore(await clients.dynamodb(), lake.lease_table, clock)
        lease = await store.get(shard)
        assert lease is not None
        return lease


async def take(lake: AwsSettings, lease: Lease, clock: FixedClock | SystemClock) -> bool:
    async with AwsClients(lake) as clients:
        store = DynamoDbLeaseStore(await clients.dynamodb(), lake.lease_table, clock)
        return await store.take(lease, "w-new") is not None


def test_a_killed_rewind_blocks_the_shard_for_the_short_hold_only(
    lake: AwsSettings, tmp_path: Path
) -> None:
    shard = asyncio.run(dead_owner(lake))
    with (tmp_path / "rewind.log").open("w") as out:
        rewind = ManagedProcess.python_module(
            "rewind",
            "tributary_stack",
            ["rewind", "--to", "TRIM_HORIZON", "--shard", shard, "--release-timeout", "600"],
            {**os.environ, **cli_env(lake)},
            out,
        ).start()
        deadline = time.monotonic() + 120
        while (held := asyncio.run(row(lake, shard))).hold is None:
            assert rewind.poll() is None, (tmp_path / "rewind.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(2)  # waiting for the dead owner: it extends the hold meanwhile
        rewind.kill()  # SIGKILL: no finally runs
        rewind.stop(timeout=10)  # reaps it and closes its pipes
        killed_at = time.time()
    lease = asyncio.run(row(lake, shard))
    assert held.owner == "w-dead"
    assert lease.hold is not None
    assert lease.rewound is None
    assert lease.hold.until <= killed_at + HOLD_S + 0.5  # not release timeout + margin
    assert lease.hold.until > killed_at  # still held now: a take is refused …
    assert not asyncio.run(take(lake, lease, SystemClock()))
    lapsed = datetime.fromtimestamp(lease.hold.until + 0.002, UTC)
    assert asyncio.run(take(lake, lease, FixedClock(lapsed)))  # … and taken once it lapses
