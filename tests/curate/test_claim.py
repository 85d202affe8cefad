"""The run claim's contract, the same cases on S3 (moto) and in memory: one holder at a time,
an expired claim taken over exactly once, renewal and release only by the holder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from time import monotonic

import pytest

from tributary.aws import AwsClients
from tributary.cli import EXIT_RETRY, failed
from tributary.clock import SystemClock
from tributary.settings import AwsSettings
from tributary.testing import FakeClock
from tributary_curate.claim import (
    Claim,
    ClaimLostError,
    ClaimStore,
    DatasetBusyError,
    MemoryClaimStore,
    S3ClaimStore,
    acquire,
    holding,
)


@pytest.fixture(params=["memory", "s3"])
async def store(request: pytest.FixtureRequest, lake: AwsSettings) -> AsyncIterator[ClaimStore]:
    if request.param == "memory":
        yield MemoryClaimStore()
        return
    async with AwsClients(lake) as clients:
        yield S3ClaimStore(await clients.s3(), lake.lake_bucket)


def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 1, 12, tzinfo=UTC))


class Ticking(FakeClock):
    """Every reading later than the last: each renewal's body, so its ETag, differs."""

    def now(self) -> datetime:
        self.advance(0.01)
        return super().now()


async def test_second_run_is_refused_while_the_first_holds_the_claim(store: ClaimStore) -> None:
    time = clock()
    first = await acquire(store, "posts", "run-a", time, ttl_s=60)
    with pytest.raises(DatasetBusyError, match="another curate run of posts is in progress"):
        await acquire(store, "posts", "run-b", time, ttl_s=60)
    other = await acquire(store, "comments", "run-c", time, ttl_s=60)  # per dataset
    assert (first.run_id, other.run_id) == ("run-a", "run-c")
    stored = await store.read("posts")
    assert stored is not None
    assert stored.run_id == "run-a"


async def test_an_expired_claim_is_taken_over_by_exactly_one_run(store: ClaimStore) -> None:
    time = clock()
    crashed = await acquire(store, "posts", "crashed", time, ttl_s=10)
    time.advance(11)  # its run was SIGKILLed: nobody renews it
    # Expired, but a publish request it sent before may still be in flight: not yet free.
    with pytest.raises(DatasetBusyError, match="in progress"):
        await acquire(store, "posts", "early", time, ttl_s=60)
    time.advance(crashed.request_limit_s)
    outcomes = await asyncio.gather(
        *(acquire(store, "posts", f"run-{n}", time, ttl_s=60) for n in range(4)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, DatasetBusyError) for o in outcomes if o not in winners)
    # The crashed run, were it only paused, can neither renew nor release the new claim.
    with pytest.raises(ClaimLostError, match="taken over"):
        await crashed.renew()
    with pytest.raises(ClaimLostError):
        crashed.check()
    await store.delete(crashed.claim)
    stored = await store.read("posts")
    assert stored is not None
    assert stored.run_id == winners[0].run_id


async def test_holder_renews_checks_expiry_and_releases(store: ClaimStore) -> None:
    time = clock()
    async with holding(store, "posts", "run-a", time, ttl_s=40) as held:
        time.advance(20)
        held.check()  # 20 s left, margin 10 s
        await held.renew()
        time.advance(25)
        held.check()
        time.advance(10)  # 5 s left: within the margin, stop publishing
        with pytest.raises(ClaimLostError, match="about to expire"):
            held.check()
    assert await store.read("posts") is None
    again = await acquire(store, "posts", "run-b", time, ttl_s=40)
    assert again.run_id == "run-b"


async def test_release_on_cancel(store: ClaimStore) -> None:
    entered = asyncio.Event()

    async def run() -> None:
        async with holding(store, "posts", "run-a", clock(), ttl_s=60):
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(run())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.read("posts") is None


async def test_concurrent_renewals_of_one_holder_do_not_lose_the_claim(store: ClaimStore) -> None:
    """The background renewal and the one before publishing may meet: same ETag, one at a time
    (unserialized, S3 refused the second with 412 and the run gave up its own claim)."""

    time = Ticking(datetime(2026, 3, 1, 12, tzinfo=UTC))
    held = await acquire(store, "posts", "run-a", time, ttl_s=30)
    await asyncio.gather(*(held.renew() for _ in range(3)))
    held.check()
    stored = await store.read("posts")
    assert stored is not None
    assert (stored.run_id, stored.etag) == ("run-a", held.claim.etag)


async def test_check_also_reads_the_wall_clock_against_the_stored_expiry(store: ClaimStore) -> None:
    """A suspended machine: the monotonic clock stood still, the wall clock and the other runs
    did not. The claim is past its stored expiry: the holder must not publish."""
    time = clock()
    held = await acquire(store, "posts", "run-a", time, ttl_s=40)
    held.check()
    time._now += timedelta(seconds=35)  # only the wall clock moved
    with pytest.raises(ClaimLostError, match="about to expire"):
        held.check()


async def test_a_publish_request_is_bounded_and_ends_before_anyone_may_take_over(
    store: ClaimStore,
) -> None:
    """A request that hangs (a stalled connection, its retries) is cancelled after the holder's
    request limit: it cannot land once another run may take the claim over."""
    held = await acquire(store, "posts", "run-a", SystemClock(), ttl_s=2.0)
    assert held.request_limit_s == pytest.approx(0.25)
    assert held.claim.free_at == held.claim.expires_at + timedelta(seconds=0.25)
    landed = []

    async def hung_put() -> None:
        await asyncio.sleep(3600)
        landed.append("late")

    assert await held.publishing(asyncio.sleep(0, "ok")) == "ok"
    started = monotonic()
    with pytest.raises(ClaimLostError, match="outlasted"):
        await held.publishing(hung_put())
    assert monotonic() - started < 3.0  # the 0.25 s limit (room for a loaded machine), not 1 h
    with pytest.raises(ClaimLostError):  # and nothing more from this run
        await held.publishing(asyncio.sleep(0))
    assert landed == []


async def test_release_is_conditional_on_the_holders_etag(
    store: ClaimStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Release races a takeover: the claim read as ours, then replaced before the delete. The
    delete itself must carry the condition (S3: DeleteObject If-Match)."""
    time = clock()
    crashed = await acquire(store, "posts", "crashed", time, ttl_s=10)
    time.advance(20)
    winner = await acquire(store, "posts", "winner", time, ttl_s=60)
    monkeypatch.setattr(store, "read", lambda _dataset: _return(crashed.claim))
    await store.delete(crashed.claim)
    monkeypatch.undo()
    stored = await store.read("posts")
    assert stored is not None
    assert stored.run_id == winner.run_id
    await store.delete(winner.claim)
    assert await store.read("posts") is None
    await store.delete(winner.claim)  # already gone: nothing to do, no error


async def _return(claim: Claim) -> Claim:
    return claim


def test_a_lost_claim_is_transient_a_rerun_repairs_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert failed("posts", ClaimLostError("taken over")) == EXIT_RETRY
    assert "retry later" in capsys.readouterr().err


class AnswerHeldBack:
    """A `ClaimStore` whose writes reach the store and whose answers are held back until
    `answer` is set: the moment a SIGTERM can fall in, the claim written but the run not yet
    told (its request cancelled then)."""

    def __init__(self, store: ClaimStore, *held: str, then: Exception | None = None) -> None:
        self._store = store
        self._held = held
        self._then = then  # raised instead of the answer (the connection broke after the write)
        self.written = asyncio.Event()
        self.answer = asyncio.Event()

    async def _slow(self, name: str, claim: Claim) -> Claim | None:
        stored = await getattr(self._store, name)(claim)
        if name in self._held:
            self.written.set()
            await self.answer.wait()
            if self._then is not None:
                raise self._then
        return stored

    async def read(self, dataset: str) -> Claim | None:
        return await self._store.read(dataset)

    async def create(self, claim: Claim) -> Claim | None:
        return await self._slow("create", claim)

    async def replace(self, claim: Claim) -> Claim | None:
        return await self._slow("replace", claim)

    async def delete(self, claim: Claim) -> None:
        await self._store.delete(claim)


async def _cancel_once_written(
    slow: AnswerHeldBack, task: asyncio.Task[None], cancels: int = 1, after: float = 0.0
) -> None:
    await slow.written.wait()
    await asyncio.sleep(after)  # the task runs on meanwhile (to its clean-up)
    for _ in range(cancels):  # a second one: an outer timeout, the loop shutting down
        task.cancel()
        await asyncio.sleep(0.05)  # each arrives while the answer is still held back
    slow.answer.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


async def test_a_stop_while_the_claim_is_being_written_still_releases_it(
    store: ClaimStore,
) -> None:
    """SIGTERM lands after the claim reached the store but before the run heard so (seen in a
    CI run: `curate: stopped`, the claim left to expire). The run still releases it."""
    slow = AnswerHeldBack(store, "create")

    async def run() -> None:
        async with holding(slow, "posts", "run-a", clock(), ttl_s=60):
            await asyncio.sleep(3600)

    await _cancel_once_written(slow, asyncio.create_task(run()))
    assert await store.read("posts") is None


async def test_a_stop_while_the_claim_is_being_renewed_still_releases_it(
    store: ClaimStore,
) -> None:
    """The same for a renewal: the store holds the renewed claim (a new ETag) when the stop
    comes; releasing with the ETag from before would be refused and leave it."""
    slow = AnswerHeldBack(store, "replace")
    time = clock()

    async def run() -> None:
        async with holding(slow, "posts", "run-a", time, ttl_s=60) as held:
            time.advance(1)  # a later expiry: a body, so an ETag, of its own
            await held.renew()
            await asyncio.sleep(3600)

    await _cancel_once_written(slow, asyncio.create_task(run()))
    assert await store.read("posts") is None


async def test_a_second_stop_while_the_claim_is_being_written_still_releases_it(
    store: ClaimStore,
) -> None:
    slow = AnswerHeldBack(store, "create")

    async def run() -> None:
        async with holding(slow, "posts", "run-a", clock(), ttl_s=60):
            await asyncio.sleep(3600)

    await _cancel_once_written(slow, asyncio.create_task(run()), cancels=2)
    assert await store.read("posts") is None


async def test_a_stop_is_still_a_stop_when_the_claim_write_then_fails(
    store: ClaimStore,
) -> None:
    """The write in flight at the stop fails in a way the store does not translate: the run
    still ends as stopped (CancelledError, what the command reports as a stop), not with that
    error; the claim it may have stored expires."""
    slow = AnswerHeldBack(store, "create", then=RuntimeError("connection reset"))

    async def run() -> None:
        async with holding(slow, "posts", "run-a", clock(), ttl_s=60):
            await asyncio.sleep(3600)

    await _cancel_once_written(slow, asyncio.create_task(run()))


async def test_a_stop_during_a_background_renewal_after_the_block_still_releases_it(
    store: ClaimStore,
) -> None:
    """The block has ended and the background renewal's write is in flight (stored, not yet
    answered) when the run is cancelled: the renewal is heard out, the claim released with
    the renewed ETag, and the cancellation is not swallowed."""
    slow = AnswerHeldBack(store, "replace")
    time = Ticking(datetime(2026, 3, 1, 12, tzinfo=UTC))

    async def run() -> None:
        async with holding(slow, "posts", "run-a", time, ttl_s=0.3):  # renewed every 0.1 s
            await slow.written.wait()

    task = asyncio.create_task(run())
    await _cancel_once_written(slow, task, after=0.05)  # it waits on the renewal by then
    assert await store.read("posts") is None
