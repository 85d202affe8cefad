"""Stream-consumer settings from environment variables (read once by the entry point)."""

from __future__ import annotations

import socket
import uuid
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from tributary.envelope import signing_keys
from tributary.errors import ConfigError
from tributary.settings import CommonSettings
from tributary_stream.lease import Checkpoint
from tributary_stream.route import UnsignedEnvelopes
from tributary_stream.stream import MIN_POLL_GAP_S


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class StreamSettings(CommonSettings):
    """Everything the consumer reads from the environment. Batch limits are Firehose-like hints:
    the defaults suit local runs; on AWS, 5-64 MiB and 60-300 s make fewer, larger objects."""

    worker_id: str = Field(default_factory=_default_worker_id, validation_alias="WORKER_ID")
    initial_position: Checkpoint = Field(
        default=Checkpoint.TRIM_HORIZON, validation_alias="STREAM_INITIAL_POSITION"
    )
    initial_timestamp: datetime | None = Field(
        default=None, validation_alias="STREAM_INITIAL_TIMESTAMP"
    )
    default_dataset: str | None = Field(default=None, validation_alias="STREAM_DEFAULT_DATASET")
    dataset_field: str | None = Field(default=None, validation_alias="STREAM_DATASET_FIELD")
    failover_time_s: float = Field(default=10.0, gt=0, validation_alias="LEASE_FAILOVER_S")
    shard_sync_s: float = Field(default=30.0, gt=0, validation_alias="SHARD_SYNC_S")
    max_steal: int = Field(default=1, ge=0, validation_alias="LEASE_MAX_STEAL")
    lease_assignment: Literal["leader", "scan"] = Field(
        default="leader", validation_alias="LEASE_ASSIGNMENT"
    )
    lease_balance: Literal["load", "count"] = Field(
        default="load", validation_alias="LEASE_BALANCE"
    )
    lease_balance_threshold: float = Field(
        default=0.1, ge=0, validation_alias="LEASE_BALANCE_THRESHOLD"
    )
    lease_balance_dampening: float = Field(
        default=0.6, gt=0, le=1, validation_alias="LEASE_BALANCE_DAMPENING"
    )
    max_leases_for_worker: int | None = Field(
        default=None, gt=0, validation_alias="MAX_LEASES_FOR_WORKER"
    )
    lease_handoff_timeout_s: float | None = Field(
        default=None, gt=0, validation_alias="LEASE_HANDOFF_TIMEOUT_S"
    )
    lease_concurrency: int = Field(default=32, ge=1, le=256, validation_alias="LEASE_CONCURRENCY")
    batch_max_records: int = Field(default=10_000, gt=0, validation_alias="BATCH_MAX_RECORDS")
    batch_max_bytes: int = Field(default=8 * 1024 * 1024, gt=0, validation_alias="BATCH_MAX_BYTES")
    batch_max_age_s: float = Field(default=60.0, gt=0, validation_alias="BATCH_MAX_AGE_S")
    idle_flush_s: float = Field(default=2.0, gt=0, validation_alias="IDLE_FLUSH_S")
    flush_when_caught_up: bool = Field(default=False, validation_alias="FLUSH_WHEN_CAUGHT_UP")
    get_records_limit: int = Field(
        default=10_000, gt=0, le=10_000, validation_alias="GET_RECORDS_LIMIT"
    )
    idle_poll_s: float = Field(default=1.0, ge=MIN_POLL_GAP_S, validation_alias="IDLE_POLL_S")
    compress_level: int = Field(default=6, ge=1, le=9, validation_alias="GZIP_LEVEL")
    shutdown_timeout_s: float = Field(default=25.0, gt=0, validation_alias="SHUTDOWN_TIMEOUT_S")
    processor: str | None = Field(default=None, validation_alias="STREAM_PROCESSOR")
    items_table: str | None = Field(default=None, validation_alias="STREAM_ITEMS_TABLE")
    metrics_interval_s: float = Field(default=60.0, gt=0, validation_alias="METRICS_INTERVAL_S")
    # Off: a shard ends where Kinesis says (null NextShardIterator / ChildShards). On only for
    # emulators that never say so (moto): an empty page 0 ms behind on a closed shard ends it.
    end_on_empty_closed: bool = Field(default=False, validation_alias="STREAM_END_ON_EMPTY_CLOSED")
    poison_attempts: int = Field(default=3, ge=1, validation_alias="STREAM_POISON_ATTEMPTS")
    poison_min_s: float = Field(default=60.0, ge=0, validation_alias="STREAM_POISON_MIN_S")
    processor_timeout_s: float = Field(
        default=10.0, gt=0, validation_alias="STREAM_PROCESSOR_TIMEOUT_S"
    )
    processor_threads: int = Field(
        default=4, ge=1, le=64, validation_alias="STREAM_PROCESSOR_THREADS"
    )
    stall_s: float = Field(default=300.0, gt=0, validation_alias="STREAM_STALL_S")
    release_after_failures: int = Field(
        default=10, ge=1, validation_alias="STREAM_RELEASE_AFTER_FAILURES"
    )
    failing_cool_down_s: float = Field(
        default=300.0, ge=0, validation_alias="STREAM_FAILING_COOL_DOWN_S"
    )
    health_file: Path | None = Field(default=None, validation_alias="STREAM_HEALTH_FILE")
    # The API's keys: only envelopes signed with one keep their id, source and received_at.
    # ENVELOPE_SIGNING_KEYS (comma-separated, any verifies) then ENVELOPE_SIGNING_KEY.
    envelope_signing_keys: SecretStr | None = Field(
        default=None, validation_alias="ENVELOPE_SIGNING_KEYS"
    )
    envelope_signing_key: SecretStr | None = Field(
        default=None, validation_alias="ENVELOPE_SIGNING_KEY"
    )
    # Run without any key on purpose: no envelope is trusted, the API's records land as bare
    # records. Without this opt-out a consumer with no key refuses to start.
    allow_no_signing_key: bool = Field(
        default=False, validation_alias="STREAM_ALLOW_NO_SIGNING_KEY"
    )
    unsigned_envelopes: UnsignedEnvelopes = Field(
        default=UnsignedEnvelopes.BARE, validation_alias="STREAM_UNSIGNED_ENVELOPES"
    )

    def verify_keys(self) -> tuple[bytes, ...]:
        """Every key an envelope may be signed with (empty when none is configured)."""
        listed, single = self.envelope_signing_keys, self.envelope_signing_key
        return signing_keys(
            None if listed is None else listed.get_secret_value(),
            None if single is None else single.get_secret_value(),
        )

    def signing_key(self) -> bytes | None:
        """The first envelope signing key, None when none is configured."""
        keys = self.verify_keys()
        return keys[0] if keys else None

    def require_signing_key(self) -> None:
        """Raise `ConfigError` unless a key is configured or its absence was chosen."""
        if not self.verify_keys() and not self.allow_no_signing_key:
            raise ConfigError(
                "ENVELOPE_SIGNING_KEY (or ENVELOPE_SIGNING_KEYS) is not set: without the API's "
                "key no envelope is trusted and every API record would be re-wrapped as a bare "
                "record. Set it to the API's key, or STREAM_ALLOW_NO_SIGNING_KEY=true to run so "
                "on purpose"
            )

    @model_validator(mode="after")
    def _keys_long_enough(self) -> StreamSettings:
        self.verify_keys()  # raises ValueError for a key under 32 characters
        return self

    @model_validator(mode="after")
    def _position(self) -> StreamSettings:
        if self.initial_position is Checkpoint.SHARD_END:
            raise ValueError("STREAM_INITIAL_POSITION must be TRIM_HORIZON, LATEST or AT_TIMESTAMP")
        if (self.initial_position is Checkpoint.AT_TIMESTAMP) != (
            self.initial_timestamp is not None
        ):
            raise ValueError(
                "STREAM_INITIAL_TIMESTAMP is needed with (and only with) "
                "STREAM_INITIAL_POSITION=AT_TIMESTAMP"
            )
        return self
