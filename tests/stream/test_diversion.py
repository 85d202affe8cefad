"""Records raw refuses for good are diverted to a quarantine chain of their own: safe across a
crash and replay, and only when a put was refused (not when the object exists already)."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson

from tests.stream.conftest import Harness, envelope
from tributary.batch import decode_ndjson_gz
from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError
from tributary.raw_writer import ObjectInfo
from tributary.testing import MemoryRawWriter
from tributary_stream.lease import Lease
from tributary_stream.testing import MemoryLeaseStore, MemoryStream

SHARD = "shardId-000000000000"


class HangingCheckpoints(MemoryLeaseStore):
    """Checkpoints wait while `hang` is set: a crash then comes before the checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.open.set()

    @property
    def hang(self) -> bool:
        return not self.open.is_set()

    @hang.setter
    def hang(self, value: bool) -> None:
        if value:
            self.open.clear()
        else:
            self.open.set()

    async def checkpoint(
        self, lease: Lease, checkpoint: str, landed: Mapping[str, str]
    ) -> Lease | None:
        await self.open.wait()
        return await super().checkpoint(lease, checkpoint, landed)


class HeadRefused(MemoryRawWriter):
    """HeadObject is refused (a 403: the grant is missing) while `refuse_head` is set."""

    refuse_head = False

    async def head(self, key: str) -> ObjectInfo | None:
        if self.refuse_head:
            raise PermanentError(f"head {key} refused (AccessDenied) (fault injected)")
        return await super().head(key)


def at_end(h: Harness) -> bool:
    lease = h.store.leases.get(SHARD)
    return lease is not None and lease.checkpoint == h.stream.shards[SHARD][-1].sequence


def quarantined(h: Harness) -> list[tuple[str, dict[str, Any]]]:
    return [
        (key, orjson.loads(line))
        for key, obj in sorted(h.writer.objects.items())
        if key.startswith("quarantine/")
        for line in decode_ndjson_gz(obj.body)
    ]


async def test_a_replay_after_a_diversion_never_quarantines_ordinary_poison_twice(
    registry: DatasetRegistry,
) -> None:
    store = HangingCheckpoints()
    h = Harness(registry, MemoryStream(1), store=store)
    h.writer.denied = {"raw/events/"}
    sent = [envelope("events", "e1", {"i": 1}), b"not json", envelope("events", "e2", {"i": 2})]
    for data in sent:
        h.stream.put(SHARD, data)
    store.hang = True  # the worker dies after diverting, before its checkpoint
    worker = h.start()
    await h.wait_for(lambda: len(quarantined(h)) == 3)
    await h.kill(worker)
    store.hang = False
    h.writer.denied = set()  # the grant is fixed; the next owner replays from the checkpoint
    worker = h.start()
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    lines = quarantined(h)
    ordinary = [q for key, q in lines if ".refused-" not in key]
    diverted = [q for key, q in lines if ".refused-" in key]
    assert [base64.b64decode(q["data_base64"]) for q in ordinary] == [b"not json"]
    assert sorted(q["id"] for q in diverted) == ["e1", "e2"]  # refused once, kept once
    assert diverted[0]["errors"][0]["message"].startswith("raw write refused 3 times:")
    # The replay found raw writable: the diverted records are also in raw now (documented).
    assert h.raw_lines() == Counter([sent[0], sent[2]])


async def test_an_existing_object_whose_head_is_refused_is_not_diverted(
    registry: DatasetRegistry,
) -> None:
    """A 412 means the records are in raw already: a refused HeadObject after it must not
    quarantine them; the shard backs off until HeadObject is allowed, then goes on."""
    store = HangingCheckpoints()
    writer = HeadRefused()
    h = Harness(registry, MemoryStream(1), store=store, writer=writer)
    sent = [envelope("events", f"e{i}", {"i": i}) for i in range(4)]
    for data in sent:
        h.stream.put(SHARD, data)
    store.hang = True
    worker = h.start()
    await h.wait_for(lambda: bool(h.raw_lines()))
    await h.kill(worker)  # landed, not checkpointed
    store.hang = False
    writer.refuse_head = True
    worker = h.start()
    await h.wait_for(lambda: h.metrics.total("ShardFailures", shard=SHARD) >= 4)
    assert not quarantined(h)
    writer.refuse_head = False
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    assert h.raw_lines() == Counter(sent)
    assert not quarantined(h)
