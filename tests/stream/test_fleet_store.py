"""One contract for both fleet stores (heartbeats, leader lock): DynamoDB on moto, and memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tributary.aws import AwsClients
from tributary.settings import AwsSettings
from tributary_stream.fleet import DynamoDbFleetStore, FleetStore, FleetView, WorkerBeat
from tributary_stream.testing import MemoryFleetStore


@pytest.fixture(params=["dynamodb", "memory"])
async def fleet(request: pytest.FixtureRequest, lake: AwsSettings) -> AsyncIterator[FleetStore]:
    if request.param == "memory":
        yield MemoryFleetStore()
        return
    async with AwsClients(lake) as clients:
        yield DynamoDbFleetStore(await clients.dynamodb(), lake.fleet_table)


async def test_a_beat_returns_everyones_beats(fleet: FleetStore) -> None:
    view = await fleet.beat(WorkerBeat("w1", 1, 100.0, 2.0, 3))
    assert view == FleetView(None, 0, {"w1": WorkerBeat("w1", 1, 100.0, 2.0, 3)})
    view = await fleet.beat(WorkerBeat("w2", 7, avoid=frozenset({"shardId-1"})))
    assert set(view.workers) == {"w1", "w2"}
    assert view.workers["w2"].avoid == frozenset({"shardId-1"})
    view = await fleet.beat(WorkerBeat("w1", 2))
    assert view.workers["w1"].beat == 2


async def test_the_leader_lock_is_fenced_like_a_lease(fleet: FleetStore) -> None:
    seen = await fleet.beat(WorkerBeat("a", 1))
    assert await fleet.claim_leader("a", seen)
    assert not await fleet.claim_leader("b", seen)  # a got there first
    view = await fleet.beat(WorkerBeat("b", 1))
    assert (view.leader, view.leader_counter) == ("a", 1)
    assert await fleet.renew_leader("a", 1)
    assert not await fleet.renew_leader("a", 1)  # a stale copy
    assert not await fleet.claim_leader("b", view)  # the counter moved: a is alive
    view = await fleet.beat(WorkerBeat("b", 2))
    assert await fleet.claim_leader("b", view)  # a's lock seen unchanged: b takes it over
    assert not await fleet.renew_leader("a", 2)
    assert not await fleet.forget("a", ["b"])  # only the leader forgets workers
    assert await fleet.forget("b", ["a"])
    view = await fleet.beat(WorkerBeat("b", 3))
    assert (view.leader, set(view.workers)) == ("b", {"b"})
    assert not await fleet.resign("a", view.leader_counter)
    assert await fleet.resign("b", view.leader_counter)
    view = await fleet.beat(WorkerBeat("c", 1))
    assert view.leader is None
    assert await fleet.claim_leader("c", view)
    await fleet.leave("b")
    view = await fleet.beat(WorkerBeat("c", 2))
    assert (view.leader, set(view.workers)) == ("c", {"c"})


async def test_a_claim_on_a_free_lock_never_moves_its_counter_back(fleet: FleetStore) -> None:
    assert await fleet.claim_leader("a", FleetView())
    assert await fleet.renew_leader("a", 1)
    assert await fleet.resign("a", 2)
    assert not await fleet.claim_leader("b", FleetView())  # a stale view: counter 0
    assert await fleet.claim_leader("b", FleetView(None, 2))
    assert await fleet.renew_leader("b", 3)  # the counter is 3: it went on from 2
