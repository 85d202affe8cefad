"""StateStore contract: the same cases against DynamoDB + S3 on moto and the in-memory store.

The in-memory store must be as strict as the table: conditional on the version, and refusing an
item over 400 KB (409,600 bytes as DynamoDB counts them) exactly there. Moto is stricter than
DynamoDB here: it refuses items over 405,000 bytes (its own estimate, moto/dynamodb/models/
dynamo_type.py LimitedSizeDict); the boundary test records that gap rather than hiding it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import fake_vendor_api
from tributary.aws import AwsClients
from tributary.errors import PermanentError, TransientError
from tributary.settings import AwsSettings
from tributary.testing import FakeClock, MemoryMetrics, MemoryRawWriter
from tributary_importer.fetch import SourceClient
from tributary_importer.run import Importer
from tributary_importer.source import SourceSpec
from tributary_importer.state import (
    INLINE_SEEN_BYTES,
    MAX_ITEM_BYTES,
    MemoryStateStore,
    SourceState,
    StateCodec,
    StateConflictError,
    StateStore,
    StateTooLargeError,
)
from tributary_importer.state_blob import BLOB_PREFIX, MemoryStateBlobs, S3StateBlobs, StateBlobs
from tributary_importer.state_dynamodb import DynamoDbStateStore


@pytest.fixture(params=["memory", "dynamodb"])
async def stores(
    request: pytest.FixtureRequest, lake: AwsSettings
) -> AsyncIterator[tuple[StateStore, StateBlobs]]:
    if request.param == "memory":
        blobs = MemoryStateBlobs()
        yield MemoryStateStore(blobs), blobs
        return
    async with AwsClients(lake) as clients:
        s3_blobs = S3StateBlobs(await clients.s3(), lake.lake_bucket)
        yield DynamoDbStateStore(await clients.dynamodb(), lake.state_table, s3_blobs), s3_blobs


def look_back(n: int, value: str = "2026-01-01T00:00:00Z") -> dict[str, str]:
    return {f"{i}@{value}": value for i in range(n)}


async def test_put_is_conditional_on_the_version(stores: tuple[StateStore, StateBlobs]) -> None:
    store, _ = stores
    fresh = await store.get("src")
    assert fresh == SourceState("src")
    saved = await store.put(SourceState("src", fresh.version, cursor="5", seen={"a@5": "5"}))
    assert saved.version == 1
    assert (await store.get("src")) == saved
    with pytest.raises(StateConflictError, match="another run"):
        await store.put(SourceState("src", fresh.version, cursor="6"))
    assert (await store.get("src")) == saved
    reset = await store.reset("src")
    assert reset == SourceState("src", 2, runs=0)  # versions never restart
    assert (await store.get("src")) == reset


async def test_a_run_that_read_the_state_before_a_reset_cannot_write_after_it(
    stores: tuple[StateStore, StateBlobs],
) -> None:
    """The operator's reset wins: a run that read version 2 cannot undo it with version 3."""
    store, _ = stores
    first = await store.put(SourceState("r", 0, cursor="1", runs=1))
    second = await store.put(SourceState("r", first.version, cursor="2", runs=2))
    await store.reset("r")
    with pytest.raises(StateConflictError):
        await store.put(SourceState("r", second.version, cursor="3"))
    after = await store.get("r")
    assert (after.cursor, after.version, after.runs) == (None, 3, 2)


async def test_a_write_at_a_version_that_was_never_stored_is_refused(
    stores: tuple[StateStore, StateBlobs],
) -> None:
    store, _ = stores
    with pytest.raises(StateConflictError):
        await store.put(SourceState("never", 4, cursor="1"))
    assert (await store.get("never")) == SourceState("never")
    saved = await store.put(SourceState("never", 0, cursor="1"))
    with pytest.raises(StateConflictError):
        await store.put(SourceState("never", 0, cursor="2"))  # a second "first" write
    assert (await store.get("never")) == saved


async def test_a_reset_leaves_the_blob_of_a_run_that_writes_after_it(
    stores: tuple[StateStore, StateBlobs],
) -> None:
    """A run starting during the reset writes its blob for the version after the reset's; the
    reset's pruning leaves it (it drops only versions up to its own)."""
    store, blobs = stores
    saved = await store.put(SourceState("race", 0, seen=look_back(10_000)))
    [old] = await blobs.keys(f"{BLOB_PREFIX}race/")
    newer = f"{BLOB_PREFIX}race/v{saved.version + 2:010d}-0123456789abcdef.json.gz"
    await blobs.put(newer, b"a blob of the run after the reset")
    await store.reset("race")
    assert await blobs.keys(f"{BLOB_PREFIX}race/") == [newer]
    assert old != newer


async def test_a_look_back_of_50k_ids_round_trips(stores: tuple[StateStore, StateBlobs]) -> None:
    store, blobs = stores
    seen = look_back(50_000)
    saved = await store.put(SourceState("busy", 0, cursor="2026-01-01T00:00:00Z", seen=seen))
    assert (await store.get("busy")) == saved
    [first] = await blobs.keys(f"{BLOB_PREFIX}busy/")
    # The next version replaces the blob; the old one is removed once the item names the new.
    again = await store.put(replace_seen(saved, look_back(50_001)))
    assert (await store.get("busy")).seen == again.seen
    [second] = await blobs.keys(f"{BLOB_PREFIX}busy/")
    assert second != first
    # A small look-back goes back inline, and the blob goes.
    small = await store.put(replace_seen(again, look_back(3)))
    assert (await store.get("busy")) == small
    assert await blobs.keys(f"{BLOB_PREFIX}busy/") == []


def replace_seen(state: SourceState, seen: dict[str, str]) -> SourceState:
    return SourceState(state.source, state.version, state.cursor, seen, state.runs)


def dynamodb_size(state: SourceState) -> int:
    """The size DynamoDB's documentation gives the item storing `state` (computed here, not by
    the store): names and UTF-8 strings, a number as ceil(significant digits / 2) + 1 bytes."""
    item = StateCodec(MemoryStateBlobs()).encode(state)
    digits = len(str(item.version).strip("0")) or 1
    strings = {"pk": item.pk, "doc": item.doc}
    number = len("version") + -(-digits // 2) + 1
    return sum(len(k) + len(v.encode()) for k, v in strings.items()) + number


def sized(source: str, version: int, size: int) -> SourceState:
    """A state whose stored item is exactly `size` bytes as DynamoDB counts them."""
    base = dynamodb_size(SourceState(source, version, cursor=""))
    state = SourceState(source, version, cursor="x" * (size - base))
    assert dynamodb_size(state) == size
    return state


async def test_the_400_kb_limit_is_exactly_409600_bytes(
    stores: tuple[StateStore, StateBlobs],
) -> None:
    store, _ = stores
    saved = await store.put(SourceState("edge400", 0, cursor="1"))
    with pytest.raises(StateTooLargeError, match="is 409601 bytes"):
        await store.put(sized("edge400", saved.version, MAX_ITEM_BYTES + 1))
    assert (await store.get("edge400")) == saved
    at_limit = sized("edge400", saved.version, MAX_ITEM_BYTES)
    if isinstance(store, MemoryStateStore):
        stored = await store.put(at_limit)  # DynamoDB stores an item of exactly 400 KB
        assert (await store.get("edge400")) == stored
        return
    # The moto gap: moto refuses from 405,001 bytes, so 409,600 is refused there (and reported
    # the same way) although DynamoDB stores it; 405,000 is the most moto stores.
    with pytest.raises(StateTooLargeError):
        await store.put(at_limit)
    assert (await store.get("edge400")) == saved
    stored = await store.put(sized("edge400", saved.version, 405_000))
    assert (await store.get("edge400")) == stored


async def test_an_item_over_400_kb_is_refused_and_nothing_changes(
    stores: tuple[StateStore, StateBlobs],
) -> None:
    store, _ = stores
    saved = await store.put(SourceState("big", 0, cursor="1"))
    with pytest.raises(StateTooLargeError, match=r"over DynamoDB.s 409600-byte item limit"):
        await store.put(SourceState("big", saved.version, cursor="x" * 420_000))
    assert (await store.get("big")) == saved
    # Just under the limit is stored (the rest of the item is well under 10 KB).
    near = await store.put(SourceState("big", saved.version, cursor="y" * 390_000))
    assert (await store.get("big")) == near


async def test_a_look_back_just_over_the_inline_limit_goes_to_a_blob(
    stores: tuple[StateStore, StateBlobs],
) -> None:
    store, blobs = stores
    n = INLINE_SEEN_BYTES // 40 + 1
    saved = await store.put(SourceState("edge", 0, seen=look_back(n)))
    assert len(await blobs.keys(f"{BLOB_PREFIX}edge/")) == 1
    assert (await store.get("edge")) == saved


async def test_a_missing_blob_is_a_clear_permanent_error(
    stores: tuple[StateStore, StateBlobs],
) -> None:
    store, blobs = stores
    await store.put(SourceState("gone", 0, seen=look_back(10_000)))
    [key] = await blobs.keys(f"{BLOB_PREFIX}gone/")
    await blobs.delete(key)
    with pytest.raises(PermanentError, match=r"missing; `state reset --source gone`"):
        await store.get("gone")
    await store.reset("gone")  # what the error tells the operator to do
    assert (await store.get("gone")) == SourceState("gone", 2)


async def test_reset_removes_the_blobs(stores: tuple[StateStore, StateBlobs]) -> None:
    store, blobs = stores
    await store.put(SourceState("reset", 0, seen=look_back(10_000)))
    await store.reset("reset")
    assert await blobs.keys(f"{BLOB_PREFIX}reset/") == []
    assert (await store.get("reset")) == SourceState("reset", 2)


@pytest.fixture(scope="module")
def busy_vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fake vendor API of its own whose `items` gain 50,000 changes within one day."""
    with fake_vendor_api(tmp_path_factory.mktemp("fakeapi-busy")) as url:
        httpx.post(f"{url}/__admin/advance", params={"changed": 0, "added": 50_000}, timeout=60)
        yield url


@pytest.mark.timeout(300)
async def test_a_source_whose_look_back_holds_50k_ids_advances_on_dynamodb(
    busy_vendor: str, lake: AwsSettings
) -> None:
    spec = SourceSpec.model_validate(
        {
            "base_url": busy_vendor,
            "path": "/changes/items",
            "dataset": "items",
            "rate_limit_rps": 10_000,
            "pagination": {
                "kind": "page_number",
                "page_param": "_page",
                "size_param": "_limit",
                "page_size": 1000,
            },
            # A day of look-back: every one of the 50,050 records is inside it.
            "incremental": {
                "field": "updated_at",
                "param": "updated_since",
                "initial": "2026-01-01T00:00:00Z",
                "lag_s": 86_400,
            },
        }
    )
    writer = MemoryRawWriter()
    clock = FakeClock(datetime(2026, 1, 2, 12, tzinfo=UTC))
    async with AwsClients(lake) as clients, httpx.AsyncClient(timeout=60) as http:
        blobs = S3StateBlobs(await clients.s3(), lake.lake_bucket)
        store = DynamoDbStateStore(await clients.dynamodb(), lake.state_table, blobs)
        importer = Importer(writer, store, clock, MemoryMetrics())
        client = SourceClient("items", spec, http)
        first = await importer.run_once(client)
        assert first.records == 50_050
        state = await store.get("items")
        assert state.run is None  # the run ended: the cursor moved
        assert state.cursor == first.cursor
        assert len(state.seen) == 50_050  # the whole look-back, kept exactly
        second = await importer.run_once(client)
    assert second.records == 0  # every record in the look-back was recognised
    assert second.skipped == 50_050


class RacingBlobs(MemoryStateBlobs):
    """Blobs where, the first time a reader fetches one, a writer stores the next version
    (which prunes the blob being read) just before the read arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.writer: StateStore | None = None

    async def get(self, key: str) -> bytes | None:
        writer, self.writer = self.writer, None
        if writer is not None:
            current = await writer.get("race")
            await writer.put(replace_seen(current, look_back(20_000)))
        return await super().get(key)


@pytest.mark.parametrize("backend", ["memory", "dynamodb"])
async def test_a_reader_racing_a_writer_gets_the_new_version_not_a_missing_blob(
    backend: str, lake: AwsSettings
) -> None:
    blobs = RacingBlobs()
    async with AwsClients(lake) as clients:
        store: StateStore = (
            MemoryStateStore(blobs)
            if backend == "memory"
            else DynamoDbStateStore(await clients.dynamodb(), lake.state_table, blobs)
        )
        await store.put(SourceState("race", 0, seen=look_back(10_000)))
        blobs.writer = store
        read = await store.get("race")
    assert (read.version, len(read.seen)) == (2, 20_000)


class DeletesFail:
    """`StateBlobs` whose deletes fail (S3 throttling, a policy without DeleteObject)."""

    def __init__(self, inner: StateBlobs) -> None:
        self.inner = inner
        self.failing = True

    async def put(self, key: str, body: bytes) -> None:
        await self.inner.put(key, body)

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def delete(self, key: str) -> None:
        if self.failing:
            raise TransientError(f"delete {key}: SlowDown")
        await self.inner.delete(key)

    async def keys(self, prefix: str) -> list[str]:
        return await self.inner.keys(prefix)


@pytest.mark.parametrize("backend", ["memory", "dynamodb"])
async def test_a_committed_write_is_not_reported_failed_when_pruning_fails(
    backend: str, lake: AwsSettings
) -> None:
    async with AwsClients(lake) as clients:
        if backend == "memory":
            blobs = DeletesFail(MemoryStateBlobs())
            store: StateStore = MemoryStateStore(blobs)
        else:
            blobs = DeletesFail(S3StateBlobs(await clients.s3(), lake.lake_bucket))
            store = DynamoDbStateStore(await clients.dynamodb(), lake.state_table, blobs)
        first = await store.put(SourceState("prune", 0, seen=look_back(10_000)))
        second = await store.put(replace_seen(first, look_back(10_001)))  # pruning v1 fails
        assert second.version == 2
        assert (await store.get("prune")) == second
        assert len(await blobs.keys(f"{BLOB_PREFIX}prune/")) == 2  # v1's is left for later
        blobs.failing = False
        third = await store.put(replace_seen(second, look_back(10_002)))
        assert len(await blobs.keys(f"{BLOB_PREFIX}prune/")) == 1  # the next put pruned it
        assert (await store.get("prune")) == third
