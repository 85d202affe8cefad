"""Leases on shards, KCL 2.x style, and where they are stored.

A lease's `counter` is a fencing token: renew, take and release are conditional on it, so a
worker that lost a lease can never renew or release it again. A checkpoint is fenced on the owner
and the lease's take token instead: a random token each take writes (like KCL's concurrency
token, but stored) and nothing else changes. Renewals leave it alone, so a checkpoint in flight
is never fenced out by its own worker's renewals however slow the table, and a retried checkpoint
that had gone through is accepted again; every take replaces it, so a consumer whose lease was
taken can never checkpoint again, even when the lease has come back to the same worker since
(A, then B, then A again).

KCL 3-style additions: each worker reads the keys of the leases it owns through the
`leaseOwner-index` GSI (keys only: a renewal changes no projected attribute, so it writes
nothing to the index; eventually consistent: every decision taken from it is fenced), a lease
carries its shard's recent throughput (written by each renewal), and `handoffTo` asks the owner
to checkpoint and hand the lease over (`release` then writes the new owner). Rows whose key
starts with `_` are coordination rows (see tributary_stream.fleet), never leases.

A rewind (tributary_stack.replay.rewind) holds a lease first (`rewindHold`, epoch seconds, and
`rewindHoldId`): its owner sees the hold in its renewal and releases the lease, and `take` and
`force_handoff` are refused while the hold has not run out, so nobody takes it before the
rewind is recorded; `rewind` removes the hold. DynamoDB has no server clock in conditions: the
rewind's host writes `until` (now + 30 s, extended while it runs) and each worker's clock
decides whether it has run out, so the hold only works while their clocks agree to well under
30 s (NTP-synced hosts do; a host further off sees the hold born expired or longer).

The DynamoDB table that stores them is tributary_stream.lease_table.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from tributary.errors import PermanentError


class Checkpoint(StrEnum):
    """Checkpoint sentinels; any other checkpoint is a sequence number."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"
    SHARD_END = "SHARD_END"


@dataclass(frozen=True, slots=True)
class Lease:
    """One shard's lease as stored."""

    key: str  # the shard id
    owner: str | None
    counter: int
    checkpoint: str
    parents: frozenset[str] = frozenset()
    children: frozenset[str] = frozenset()
    owner_switches: int = 0  # takes since the last checkpoint (KCL's column; not a fence)
    token: str = ""  # the take token: written by each take, fences checkpoints
    # Per dataset, the last sequence number already landed in raw *beyond* the checkpoint
    # (an object adopted from another writer can reach past it); see tributary_stream.lander.
    landed: Mapping[str, str] = field(default_factory=dict)
    throughput_bps: float = 0.0  # bytes/s read from the shard recently (renewals write it)
    records_per_s: float = 0.0
    handoff_to: str | None = None  # the leader asked the owner to hand the lease to this worker
    # Where an AT_TIMESTAMP checkpoint resumes (a rewind writes it; see tributary_stack.replay).
    timestamp: datetime | None = None
    rewound: Rewound | None = None  # the last rewind applied to this lease
    # A rewind asked the owner to release (`rewindHold`): no take until the rewind is recorded
    # or the hold runs out (a rewind killed half way must not keep the shard unread for good).
    hold: RewindHold | None = None

    @property
    def finished(self) -> bool:
        """The shard was read to its end and everything landed."""
        return self.checkpoint == Checkpoint.SHARD_END

    def held(self, now: datetime) -> bool:
        """Whether a rewind holds this lease at `now` (its owner is asked to release it): until
        `hold.until` inclusive, to the millisecond, as DynamoDB's `rewindHold < :now` decides."""
        return self.hold is not None and round(self.hold.until, 3) >= round(now.timestamp(), 3)


@dataclass(frozen=True, slots=True)
class RewindHold:
    """A rewind in progress on a lease: its id, and until when (epoch seconds) takes wait."""

    rewind_id: str
    until: float


@dataclass(frozen=True, slots=True)
class Rewound:
    """Who rewound a lease, when, to where, under which rewind id (`rewound*` attributes)."""

    rewind_id: str
    by: str
    at: str  # ISO-8601 UTC
    to: str  # the point as given: an ISO time or TRIM_HORIZON
    how: str = ""  # "released" (the owner let go when asked), "fenced" (it did not), "free"


@dataclass(frozen=True, slots=True)
class RewindTo:
    """Where a rewind sets a lease: TRIM_HORIZON, or AT_TIMESTAMP with its timestamp."""

    checkpoint: Checkpoint
    timestamp: datetime | None
    landed: Mapping[str, str]  # chain → last sequence already in raw (adopted on replay)

    def check(self, key: str) -> None:
        """Refuse what DynamoDB and Kinesis would: a coordination row, a bad position."""
        if key.startswith(COORDINATION_PREFIX):
            raise PermanentError(f"lease table row {key!r} is a coordination row, not a lease")
        if self.checkpoint not in (Checkpoint.TRIM_HORIZON, Checkpoint.AT_TIMESTAMP):
            raise PermanentError(f"a rewind goes to TRIM_HORIZON or AT_TIMESTAMP, not {self}")
        if (self.checkpoint == Checkpoint.AT_TIMESTAMP) != (self.timestamp is not None):
            raise PermanentError("AT_TIMESTAMP needs a timestamp (and only it takes one)")


COORDINATION_PREFIX = "_"  # lease table keys of coordination rows (shard ids never start so)


class LeaseStore(Protocol):
    """Lease persistence with conditional (fenced) updates. Returns None when fenced out."""

    async def list_leases(self, consistent: bool = True) -> list[Lease]:
        """Every lease (a Scan), strongly consistent unless `consistent` is False."""

    async def list_owned(self, owner: str, consistent: bool = False) -> list[str]:
        """The keys of the leases `owner` holds, from the `leaseOwner` GSI (keys only, so a
        renewal costs the index nothing): eventually consistent (a GSI refuses
        `consistent=True` with a PermanentError, as DynamoDB does). A table without the index
        (or with it still backfilling) raises `missing_owner_index`'s ConfigError."""

    async def get(self, key: str) -> Lease | None:
        """One lease, strongly consistent; None if there is none for `key`."""

    async def create(self, lease: Lease) -> bool:
        """Create `lease` unless one exists for its shard; True if this call created it."""

    async def renew(self, lease: Lease) -> Lease | None:
        """Bump the counter and store `lease`'s throughput if `lease.owner` still holds it at
        `lease.counter`; returns the row as stored (a `handoff_to` shows up here); else None."""

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """Become the owner if the counter is still `lease.counter`; else None."""

    async def checkpoint(
        self, lease: Lease, checkpoint: str, landed: Mapping[str, str]
    ) -> Lease | None:
        """Store the checkpoint if `lease.owner` still holds it and nobody took it since
        (`lease.token` unchanged; the counter may have moved: renewals); else None."""

    async def release(self, lease: Lease) -> bool:
        """Give the lease up if still held (owner removed; or, when `lease.handoff_to` is set,
        the owner becomes that worker, whose next cycle takes it); True on success."""

    async def request_handoff(self, lease: Lease, to: str) -> bool:
        """Ask the owner to hand the lease to `to`, if nobody took it since `lease` was read
        (owner and take token unchanged); True on success."""

    async def cancel_handoff(self, lease: Lease, to: str) -> bool:
        """Withdraw the request to hand the lease to `to`, if it is still that request and
        owner and take token are unchanged (the owner's release to `to` then fails, and it
        restarts the lease); True on success."""

    async def force_handoff(self, lease: Lease, to: str) -> Lease | None:
        """The handoff to `to` timed out: make `to` the owner (counter + 1, new take token:
        the old owner is fenced out), if the request is still there and nobody took it since."""

    async def delete(self, lease: Lease) -> bool:
        """Delete a finished lease (SHARD_END) if unchanged since read (`lease.counter`)."""

    async def rewind(self, lease: Lease, to: RewindTo, record: Rewound) -> bool:
        """Set the checkpoint to `to`, free the lease (owner and `handoffTo` removed, counter
        + 1, new take token: the old owner's renew, checkpoint, release and a pending
        force_handoff all fail after it) and store `record`, if the counter is still
        `lease.counter` and `record.rewind_id` is not the last rewind applied; else False.
        A coordination row or a bad position is refused (PermanentError)."""

    async def hold_for_rewind(self, lease: Lease, hold: RewindHold) -> Lease | None:
        """Ask the owner to release for a rewind, and hold the lease against takes (and forced
        handoffs) until `hold.until` or the rewind: if the lease is there and `hold.rewind_id`
        is not the last rewind applied; the row as stored, else None. Holding again (a rerun)
        moves the hold on."""

    async def unhold(self, lease: Lease, rewind_id: str) -> bool:
        """Remove the hold of rewind `rewind_id` (a rewind that stops before recording), if it
        is still that rewind's hold; True if removed."""


def new_token() -> str:
    """A take token: random, never reused."""
    return uuid.uuid4().hex
