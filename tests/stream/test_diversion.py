"""Records raw refuses for good are diverted to a quarantine chain of their own: safe across a
crash and replay, and only when a put was refused (not when the object exists already)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson
from botocore.exceptions import ClientError

from tests.stream.conftest import Harness, envelope, landed
from tributary.aws import translate_aws_error
from tributary.batch import decode_ndjson_gz
from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError
from tributary.raw_writer import ObjectInfo, RawObject, WriteOutcome
from tributary.testing import MemoryRawWriter
from tributary_stream.lease import Lease
from tributary_stream.stream import IteratorExpiredError, Page
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
    assert diverted[0]["errors"][0]["message"].startswith("raw write refused 3 times in ")
    # The replay found raw writable: the diverted records are also in raw now (documented).
    assert h.raw_lines() == landed([sent[0], sent[2]])


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
    assert h.raw_lines() == landed(sent)
    assert not quarantined(h)


class ExpiringStream(MemoryStream):
    """Every iterator expires at once for the first `expiries` GetRecords calls: each run of
    the shard fails (a transient failure, not a refusal of anything)."""

    expiries = 0

    async def get_records(self, iterator: str, limit: int) -> Page:
        if self.expiries:
            self.expiries -= 1
            raise IteratorExpiredError("expired (fault injected)")
        return await super().get_records(iterator, limit)


class RefusingPuts(MemoryRawWriter):
    """The next `refusals` puts under `prefix` are refused with AWS error `code`, translated
    as the S3 writer translates it."""

    def __init__(self, prefix: str, code: str, refusals: int) -> None:
        super().__init__()
        self.prefix, self.code, self.refusals = prefix, code, refusals

    async def put(self, obj: RawObject) -> WriteOutcome:
        if self.refusals and obj.key.startswith(self.prefix):
            self.refusals -= 1
            error = ClientError(
                {"Error": {"Code": self.code, "Message": "no"}, "ResponseMetadata": {}},
                "PutObject",
            )
            raise translate_aws_error(error, f"put {obj.key}", "check the grants") from error
        return await super().put(obj)


async def test_other_failures_do_not_count_as_refusals_of_raw(registry: DatasetRegistry) -> None:
    """Two runs lost to expired iterators, then one refusal of raw: nothing is diverted."""
    stream = ExpiringStream(1)
    writer = RefusingPuts("raw/events/", "AccessDenied", 1)
    h = Harness(registry, stream, writer=writer)
    sent = [envelope("events", f"e{i}", {"i": i}) for i in range(3)]
    for data in sent:
        stream.put(SHARD, data)
    stream.expiries = 6  # MAX_EXPIRIES (3) per run: two failed runs
    worker = h.start()
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    assert h.metrics.total("ShardFailures", shard=SHARD) == 3
    assert h.raw_lines() == landed(sent)
    assert not quarantined(h)


async def test_credential_errors_never_divert(registry: DatasetRegistry) -> None:
    """An expired token says nothing about the records: the shard waits for credentials."""
    writer = RefusingPuts("raw/events/", "ExpiredToken", 6)
    h = Harness(registry, MemoryStream(1), writer=writer)
    sent = [envelope("events", f"e{i}", {"i": i}) for i in range(3)]
    for data in sent:
        h.stream.put(SHARD, data)
    worker = h.start()
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    assert h.metrics.total("ShardFailures", shard=SHARD) == 6
    assert h.raw_lines() == landed(sent)
    assert not quarantined(h)


async def test_refusals_divert_only_after_the_minimum_time(registry: DatasetRegistry) -> None:
    """A grant still propagating: refusals within STREAM_POISON_MIN_S never divert."""
    h = Harness(registry, MemoryStream(1), config={"poison_min_s": 1.0})
    h.writer.denied = {"raw/events/"}
    h.stream.put(SHARD, envelope("events", "e1", {"i": 1}))
    started = time.monotonic()
    worker = h.start()
    await h.wait_for(lambda: bool(quarantined(h)))
    assert time.monotonic() - started >= 1.0
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    assert h.metrics.total("ShardFailures", shard=SHARD) > 2
    ((_, diverted),) = quarantined(h)
    message = diverted["errors"][0]["message"]
    said = re.match(r"raw write refused \d+ times in (\d+\.\d) s: ", message)
    assert said is not None, message
    assert float(said.group(1)) >= 1.0  # a loaded machine may take longer, never less


async def test_an_empty_aggregate_is_counted_once_across_a_replay(
    registry: DatasetRegistry,
) -> None:
    store = HangingCheckpoints()
    h = Harness(registry, MemoryStream(1), store=store)
    h.stream.put(SHARD, envelope("events", "e1", {"i": 1}))
    h.stream.put(SHARD, b"", aggregated=[])  # an aggregate of nothing
    h.stream.put(SHARD, envelope("events", "e2", {"i": 2}))
    store.hang = True
    worker = h.start()
    await h.wait_for(lambda: sum(h.raw_lines().values()) == 2)
    await h.kill(worker)  # landed, not checkpointed: the replay reads the empty one again
    store.hang = False
    worker = h.start()
    await h.wait_for(lambda: at_end(h))
    await h.stop(worker)
    assert h.metrics.total("EmptyAggregates", shard=SHARD) == 1
