"""A worker's timings, limits and lease-management settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tributary_stream.assignment import BalanceConfig
from tributary_stream.consumer import Limits
from tributary_stream.lease import Checkpoint


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Timings and limits of a worker."""

    worker_id: str
    limits: Limits
    failover_time_s: float = 10.0
    shard_sync_s: float = 30.0
    initial_position: Checkpoint = Checkpoint.TRIM_HORIZON
    initial_timestamp: datetime | None = None  # for AT_TIMESTAMP
    max_steal: int = 1
    get_records_limit: int = 10_000
    idle_poll_s: float = 1.0
    compress_level: int = 6
    shutdown_timeout_s: float = 25.0
    tick_s: float = 0.25
    end_on_empty_closed: bool = False  # SHARD_END on an empty page of a closed shard (moto)
    poison_attempts: int = 3  # permanent refusals of one target before its records are diverted
    poison_min_s: float = 60.0  # ... and the least time from the first of them (IAM propagation)
    restart_backoff_s: float = 1.0  # first pause before a failed shard consumer is rerun
    max_backoff_s: float = 60.0  # cap of every backoff (failed shards, coordination)
    processor_timeout_s: float = 10.0  # deadline of one STREAM_PROCESSOR call
    processor_threads: int = 4  # threads the STREAM_PROCESSOR runs in (shared by all shards)
    health_file: Path | None = None  # touched while renewals and shard loops are alive
    stall_s: float = 300.0  # a shard loop still, or failing/behind with no checkpoint, this long
    coordination_deadline_s: float | None = None  # of one sync + take cycle; max(30, failover)
    release_after_failures: int = 10  # failed runs in a row before the lease is given up
    failing_cool_down_s: float = 300.0  # ... and not taken again by this worker for this long
    # "leader": KCL 3.x (a leader assigns by load, workers read their leases from the GSI,
    # graceful handoff); "scan": KCL 2.x (every worker scans, takes and steals by count).
    assignment: str = "scan"
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    handoff_timeout_s: float | None = None  # graceful handoff before it is forced; failover
    # lease-table writes in flight at once in the leader's takes/handoffs/forces/deletes and
    # the shard sync's creates (1,000 one after another at 10 ms outlast the leader's lock)
    lease_concurrency: int = 32

    @property
    def coordination_deadline(self) -> float:
        """How long one shard sync + lease taking cycle may take before it is cut off."""
        if self.coordination_deadline_s is not None:
            return self.coordination_deadline_s
        return max(30.0, self.failover_time_s)

    @property
    def take_every_s(self) -> float:
        """Lease-taking cycle: failover / 2 (KCL 2.x); failover / 4 with a leader (a cycle is
        one heartbeat write and one small index query per worker, one scan by the leader)."""
        return self.failover_time_s / (4 if self.assignment == "leader" else 2)

    @property
    def renew_every_s(self) -> float:
        """Renewal interval, and the deadline of each renewal (KCL: failover / 3)."""
        return self.failover_time_s / 3
