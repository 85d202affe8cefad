"""One curate run per dataset at a time: a claim taken before any work, with an expiry.

`_state/curate/<dataset>/claim.json` names the run holding the dataset and when its claim
expires. It is created with `If-None-Match: *`; a claim whose expiry has passed (its run
crashed or was SIGKILLed) is taken over with `If-Match` on the ETag read, so of two runs racing
for it exactly one wins. The holder renews it every `ttl / 3`; it deletes the claim (`If-Match`
on its own ETag) when it ends, also on SIGTERM (the task is cancelled): a claim write in flight
then is heard out first (through further cancellations; `RELEASE_TIMEOUT_S` at most for the
write's answer, as much again for the release), so the ETag released is the one stored.

Why a holder that outlives its claim (paused, suspended, partitioned) publishes nothing after
another run took over:
- before each object it publishes, the holder checks that a `margin` is left on its own
  monotonic clock since the last renewal AND on the wall clock before the stored `expires_at`
  (a suspended laptop stops the monotonic clock, not the wall clock);
- each publish request, all its attempts included, is cancelled after `request_limit_s`
  (half the margin), so it ends before the expiry;
- another run takes over only `request_limit_s` after `expires_at` (the claim stores it):
  what a cancelled request left in flight has that long to arrive or fail.
What is left: a host whose wall clock runs behind by more than half the margin, or a request
whose bytes stay in the network longer than `request_limit_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary.clock import Clock, iso_utc
from tributary.errors import PermanentError, TransientError, TributaryError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TTL_S = 120.0
MAX_MARGIN_S = 30.0
MAX_REQUEST_LIMIT_S = MAX_MARGIN_S / 2
RELEASE_TIMEOUT_S = 5.0
_PRECONDITION = ("PreconditionFailed", "ConditionalRequestConflict", "412")


class DatasetBusyError(PermanentError):
    """Another run holds the dataset's claim: this run did nothing (exit code 3)."""


class ClaimLostError(TransientError):
    """This run's claim expired or was taken over: it must not publish anything more. Transient
    (exit 1): a rerun publishes what this one did not, without duplicates."""


@dataclass(frozen=True, slots=True)
class Claim:
    """Who holds a dataset, until when."""

    dataset: str
    run_id: str
    owner: str
    expires_at: datetime
    etag: str | None = None
    request_limit_s: float = 0.0  # the holder's longest publish request: added to the expiry

    @property
    def free_at(self) -> datetime:
        """When another run may take the claim over."""
        return self.expires_at + timedelta(seconds=self.request_limit_s)

    def document(self) -> dict[str, str | float]:
        """The stored JSON form."""
        return {
            "dataset": self.dataset,
            "run_id": self.run_id,
            "owner": self.owner,
            "expires_at": iso_utc(self.expires_at),
            "request_limit_s": self.request_limit_s,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any], etag: str | None) -> Claim:
        """Parse the stored JSON form (a claim without `request_limit_s`: the default's)."""
        expires = datetime.fromisoformat(doc["expires_at"].replace("Z", "+00:00"))
        limit = float(doc.get("request_limit_s", MAX_REQUEST_LIMIT_S))
        return cls(doc["dataset"], doc["run_id"], doc["owner"], expires, etag, limit)


def claim_key(dataset: str) -> str:
    """Where a dataset's claim lives in the lake bucket."""
    return f"_state/curate/{dataset}/claim.json"


def this_process() -> str:
    """`host:pid`, for the message a refused run prints."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ClaimStore(Protocol):
    """Stores claims with conditional writes."""

    async def read(self, dataset: str) -> Claim | None:
        """The stored claim (expired or not), or None."""

    async def create(self, claim: Claim) -> Claim | None:
        """Store `claim` if there is none; the stored claim with its etag, or None if one
        exists already."""

    async def replace(self, claim: Claim) -> Claim | None:
        """Store `claim` over the one read as `claim.etag`; None if it changed since."""

    async def delete(self, claim: Claim) -> None:
        """Delete the claim if it is still `claim.etag` (else leave it: it is someone else's)."""


class MemoryClaimStore:
    """`ClaimStore` over a dict, with S3's conditional semantics."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}
        self._versions = 0

    def _stored(self, claim: Claim) -> Claim:
        self._versions += 1
        stored = replace(claim, etag=f'"v{self._versions}"')
        self.claims[claim.dataset] = stored
        return stored

    async def read(self, dataset: str) -> Claim | None:
        """The stored claim."""
        return self.claims.get(dataset)

    async def create(self, claim: Claim) -> Claim | None:
        """Create-only."""
        return None if claim.dataset in self.claims else self._stored(claim)

    async def replace(self, claim: Claim) -> Claim | None:
        """If-Match."""
        current = self.claims.get(claim.dataset)
        if current is None or current.etag != claim.etag:
            return None
        return self._stored(claim)

    async def delete(self, claim: Claim) -> None:
        """Delete if unchanged (S3: DeleteObject If-Match; 404 or 412 otherwise, both ignored)."""
        current = self.claims.get(claim.dataset)
        if current is not None and current.etag == claim.etag:
            del self.claims[claim.dataset]


class S3ClaimStore:
    """`ClaimStore` on the lake bucket (`If-None-Match: *`, `If-Match`)."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    async def read(self, dataset: str) -> Claim | None:
        """GetObject; None on NoSuchKey."""
        key = claim_key(dataset)
        try:
            response = await self._s3.get_object(Bucket=self._bucket, Key=key)
            async with response["Body"] as body:
                data = await body.read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise _translate(exc, key) from exc
        except BotoCoreError as exc:
            raise _translate(exc, key) from exc
        return Claim.from_document(orjson.loads(data), response["ETag"])

    async def _put(self, claim: Claim, **condition: str) -> Claim | None:
        key = claim_key(claim.dataset)
        try:
            response = await self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=orjson.dumps(claim.document()),
                ContentType="application/json",
                **condition,  # type: ignore[arg-type]
            )
        except ClientError as exc:
            if error_code(exc) in (*_PRECONDITION, "NoSuchKey"):
                return None
            raise _translate(exc, key) from exc
        except BotoCoreError as exc:
            raise _translate(exc, key) from exc
        return replace(claim, etag=response["ETag"])

    async def create(self, claim: Claim) -> Claim | None:
        """PutObject with If-None-Match: *."""
        return await self._put(claim, IfNoneMatch="*")

    async def replace(self, claim: Claim) -> Claim | None:
        """PutObject with If-Match."""
        assert claim.etag is not None
        return await self._put(claim, IfMatch=claim.etag)

    async def delete(self, claim: Claim) -> None:
        """DeleteObject with If-Match on our ETag: a claim taken over since (412) or gone (404)
        is left alone. A release is best effort: if it fails the claim simply expires."""
        assert claim.etag is not None
        key = claim_key(claim.dataset)
        try:
            await self._s3.delete_object(Bucket=self._bucket, Key=key, IfMatch=claim.etag)
        except ClientError as exc:
            if error_code(exc) in (*_PRECONDITION, "NoSuchKey", "404"):
                return
            log.warning("could not release curate claim", extra={"key": key, "error": str(exc)})
        except BotoCoreError as exc:
            log.warning("could not release curate claim", extra={"key": key, "error": str(exc)})


class HeldClaim:
    """A claim this run holds: renewed in the background, checked before each publish."""

    def __init__(
        self, store: ClaimStore, claim: Claim, clock: Clock, ttl_s: float, margin_s: float
    ) -> None:
        self._store = store
        self.claim = claim
        self._clock = clock
        self._ttl_s = ttl_s
        self._margin_s = margin_s
        self.request_limit_s = claim.request_limit_s
        self._valid_until = clock.monotonic() + ttl_s
        self._lost: str | None = None
        self._renewing = asyncio.Lock()

    @property
    def run_id(self) -> str:
        """The run id the claim names (it also names the run's staging prefix)."""
        return self.claim.run_id

    def check(self) -> None:
        """Raise `ClaimLostError` unless the claim is surely still this run's."""
        if self._lost:
            raise ClaimLostError(self._lost)
        left = min(
            self._valid_until - self._clock.monotonic(),  # since the last renewal was sent
            (self.claim.expires_at - self._clock.now()).total_seconds(),  # also across suspend
        )
        if left < self._margin_s:
            raise ClaimLostError(
                f"the curate claim of {self.claim.dataset} is about to expire unrenewed; "
                "stopping before publishing more (the rerun repairs it)"
            )

    async def publishing(self, request: Awaitable[T]) -> T:
        """Run one publish request if the claim is surely still ours, cancelled after
        `request_limit_s` (all its retries included): it cannot land after the expiry."""
        try:
            self.check()
        except ClaimLostError:
            if asyncio.iscoroutine(request):
                request.close()
            raise
        try:
            return await asyncio.wait_for(request, self.request_limit_s)
        except TimeoutError:
            self._lost = (
                f"a publish request of {self.claim.dataset} outlasted {self.request_limit_s:g} s; "
                "stopping before the claim can expire (the rerun repairs it)"
            )
            raise ClaimLostError(self._lost) from None

    async def renew(self) -> None:
        """Push the expiry `ttl` ahead (If-Match); on refusal the claim is lost. One renewal at
        a time: two with the same ETag would refuse each other."""
        async with self._renewing:
            if self._lost:
                raise ClaimLostError(self._lost)
            started = self._clock.monotonic()
            expires = self._clock.now() + timedelta(seconds=self._ttl_s)
            write = asyncio.ensure_future(
                self._store.replace(replace(self.claim, expires_at=expires))
            )
            try:
                stored = await asyncio.shield(write)
            except asyncio.CancelledError:
                renewed, _ = await _to_the_end(
                    write, _deadline(), f"renewing {self.claim.dataset}'s claim"
                )
                if renewed is not None:
                    self.claim = renewed  # its new ETag is the one the release must name
                raise
            if stored is None:
                self._lost = (
                    f"the curate claim of {self.claim.dataset} was taken over by another run"
                )
                raise ClaimLostError(self._lost)
            self.claim = stored
            self._valid_until = started + self._ttl_s

    async def keep_renewed(self) -> None:
        """Renew every ttl/3 until cancelled (a failure is remembered; `check` raises it)."""
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            try:
                await self.renew()
            except ClaimLostError:
                return
            except TributaryError as exc:  # unreachable for a while: check() decides by expiry
                log.warning("curate claim renewal failed", extra={"error": str(exc)})


async def acquire(
    store: ClaimStore, dataset: str, run_id: str, clock: Clock, ttl_s: float
) -> HeldClaim:
    """Claim `dataset` for `run_id`, or raise `DatasetBusyError` naming who holds it. Cancelled
    (a stop) while a claim write is in flight, it waits for that write's answer and releases
    what it stored: the store may hold the claim before this run hears so."""
    claiming = asyncio.ensure_future(_acquire(store, dataset, run_id, clock, ttl_s))
    try:
        return await asyncio.shield(claiming)
    except asyncio.CancelledError:
        deadline = _deadline()  # the write's answer and the release share it
        held, _ = await _to_the_end(claiming, deadline, f"claiming {dataset}")
        if held is not None:
            await _release(store, held.claim, deadline)
        raise


def _deadline() -> float:
    """When a stop stops waiting on the claim store (event loop time)."""
    return asyncio.get_running_loop().time() + RELEASE_TIMEOUT_S


async def _to_the_end(step: Awaitable[T], deadline: float, what: str) -> tuple[T | None, bool]:
    """Await `step` (`what` names it in the log) to its end, at most until `deadline`, through
    any cancellation of the caller: a claim write in flight must be heard out, or the claim it
    stored could not be released. Its result (None if it failed or ran out of time: the claim
    then expires) and whether a cancellation came meanwhile (the caller raises it after)."""
    task = asyncio.ensure_future(step)
    loop, stopped = asyncio.get_running_loop(), False
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            task.cancel()
            log.warning(
                "curate claim store did not answer in time; the claim will expire",
                extra={"step": what},
            )
            return None, stopped
        try:
            await asyncio.wait({task}, timeout=left)  # a cancellation here leaves `task` be
        except asyncio.CancelledError:
            stopped = True
    if task.cancelled():
        return None, stopped
    if (error := task.exception()) is not None:
        log.warning("curate claim step failed", extra={"step": what, "error": repr(error)})
        return None, stopped
    return task.result(), stopped


async def _release(store: ClaimStore, claim: Claim, deadline: float | None = None) -> None:
    """Delete our claim, best effort and bounded (a stop must not wait on a store going down):
    an unreleased claim only makes the next run wait for its expiry. A cancellation that comes
    meanwhile is raised once the delete has ended."""
    step = f"releasing {claim.dataset}'s claim"
    _, stopped = await _to_the_end(store.delete(claim), deadline or _deadline(), step)
    if stopped:
        raise asyncio.CancelledError


async def _acquire(
    store: ClaimStore, dataset: str, run_id: str, clock: Clock, ttl_s: float
) -> HeldClaim:
    margin = min(MAX_MARGIN_S, ttl_s / 4)
    expires = clock.now() + timedelta(seconds=ttl_s)
    wanted = Claim(dataset, run_id, this_process(), expires, request_limit_s=margin / 2)
    stored = await store.create(wanted)
    if stored is None:
        current = await store.read(dataset)
        if current is not None and current.free_at > clock.now():
            raise DatasetBusyError(
                f"another curate run of {dataset} is in progress ({current.owner}, run "
                f"{current.run_id}, claim free at {iso_utc(current.free_at)}); this run did "
                "nothing. Run again when it has finished."
            )
        if current is None:
            stored = await store.create(wanted)
        else:
            log.warning(
                "taking over an expired curate claim",
                extra={"dataset": dataset, "previous": current.document()},
            )
            stored = await store.replace(replace(wanted, etag=current.etag))
        if stored is None:
            raise DatasetBusyError(
                f"another curate run of {dataset} claimed it at the same moment; this run did "
                "nothing. Run again when it has finished."
            )
    return HeldClaim(store, stored, clock, ttl_s, margin_s=margin)


@contextlib.asynccontextmanager
async def holding(
    store: ClaimStore, dataset: str, run_id: str, clock: Clock, ttl_s: float
) -> AsyncIterator[HeldClaim]:
    """Hold the claim for the block: renewed meanwhile, released after (also when cancelled)."""
    held = await acquire(store, dataset, run_id, clock, ttl_s)
    renewing = asyncio.create_task(held.keep_renewed())
    try:
        yield held
    finally:
        renewing.cancel()
        # A renewal in flight is heard out (`held.claim` then names the stored ETag), also if
        # this task is cancelled meanwhile: that cancellation is raised after the release.
        _, stopped = await _to_the_end(renewing, _deadline(), f"renewing {dataset}'s claim")
        await _release(store, held.claim)
        if stopped:
            raise asyncio.CancelledError


def _translate(exc: Exception, key: str) -> Exception:
    return translate_aws_error(exc, f"curate claim {key}", "check LAKE_BUCKET and IAM")
