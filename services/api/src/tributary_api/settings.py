"""API settings from environment variables (read once by the entry point)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tributary.envelope import signing_keys
from tributary.settings import CommonSettings
from tributary_api.body import DEFAULT_MAX_VALUES


class SinkKind(StrEnum):
    """Where accepted records go."""

    KINESIS = "kinesis"  # PutRecords to STREAM_NAME
    S3 = "s3"  # one create-only raw object per request in LAKE_BUCKET
    MEMORY = "memory"  # process memory: benchmarks and tests only, NOT durable


class ApiKeySpec(BaseModel):
    """One API key as configured: `{"name": "...", "sha256": "<hex>", "datasets": [...]}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    datasets: list[str] | None = None


class ApiSettings(CommonSettings):
    """Everything the API reads from the environment."""

    host: str = Field(default="127.0.0.1", validation_alias="API_HOST")
    port: int = Field(default=8000, ge=0, le=65535, validation_alias="API_PORT")
    workers: int = Field(default=1, ge=1, le=64, validation_alias="API_WORKERS")
    sink: SinkKind = Field(default=SinkKind.KINESIS, validation_alias="API_SINK")
    keys: list[ApiKeySpec] = Field(default_factory=list, validation_alias="API_KEYS")
    max_body_bytes: int = Field(
        default=5 * 1024 * 1024, gt=0, validation_alias="API_MAX_BODY_BYTES"
    )
    max_records: int = Field(default=500, gt=0, validation_alias="API_MAX_RECORDS")
    # Bounds the memory one request takes while parsed (~100 bytes per value, whatever the shape).
    max_body_values: int = Field(
        default=DEFAULT_MAX_VALUES, gt=0, validation_alias="API_MAX_BODY_VALUES"
    )
    max_record_bytes: int = Field(
        default=1024 * 1024, gt=0, le=1024 * 1024, validation_alias="API_MAX_RECORD_BYTES"
    )
    rate_limit_rps: float = Field(default=0.0, ge=0, validation_alias="API_RATE_LIMIT_RPS")
    rate_limit_burst: float = Field(default=0.0, ge=0, validation_alias="API_RATE_LIMIT_BURST")
    max_in_flight: int = Field(default=64, gt=0, validation_alias="API_MAX_IN_FLIGHT")
    # Body bytes held at once across requests (a request holds up to ~3x its body while
    # ingested): past it, 503 overloaded with Retry-After. At least one full body.
    max_in_flight_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, validation_alias="API_MAX_IN_FLIGHT_BYTES"
    )
    # Opt-in: envelopes sent in KPL aggregates of at most API_KINESIS_AGGREGATE_MAX_BYTES, grouped
    # by shard (tributary_api.aggregate): fewer PutRecords entries and payload units. Needs
    # kinesis:ListShards.
    kinesis_aggregate: bool = Field(default=False, validation_alias="API_KINESIS_AGGREGATE")
    kinesis_aggregate_max_bytes: int = Field(
        default=51_200, ge=1024, le=1024 * 1024, validation_alias="API_KINESIS_AGGREGATE_MAX_BYTES"
    )
    sink_timeout_s: float = Field(default=10.0, gt=0, validation_alias="API_SINK_TIMEOUT_S")
    sink_max_attempts: int = Field(default=8, ge=1, le=20, validation_alias="API_SINK_MAX_ATTEMPTS")
    retry_after_s: int = Field(default=1, ge=1, validation_alias="API_RETRY_AFTER_S")
    graceful_shutdown_s: float = Field(
        default=25.0, gt=0, validation_alias="API_GRACEFUL_SHUTDOWN_S"
    )
    metrics_interval_s: float = Field(default=60.0, gt=0, validation_alias="METRICS_INTERVAL_S")
    # Shared with the stream consumer, which trusts only envelopes signed with one of them
    # (HMAC-SHA256): ENVELOPE_SIGNING_KEYS (comma-separated, the first signs) then
    # ENVELOPE_SIGNING_KEY. See `tributary.envelope.signing_keys`.
    envelope_signing_keys: SecretStr | None = Field(
        default=None, validation_alias="ENVELOPE_SIGNING_KEYS"
    )
    envelope_signing_key: SecretStr | None = Field(
        default=None, validation_alias="ENVELOPE_SIGNING_KEY"
    )

    @model_validator(mode="after")
    def _signing_key(self) -> ApiSettings:
        keys = self._keys()  # raises for a short key
        if self.sink is SinkKind.KINESIS and not keys:
            raise ValueError(
                "API_SINK=kinesis needs ENVELOPE_SIGNING_KEY (or ENVELOPE_SIGNING_KEYS: the stream "
                "consumer's keys): without it the consumer cannot tell the API's envelopes from "
                "forged ones"
            )
        return self

    def _keys(self) -> tuple[bytes, ...]:
        listed, single = self.envelope_signing_keys, self.envelope_signing_key
        return signing_keys(
            None if listed is None else listed.get_secret_value(),
            None if single is None else single.get_secret_value(),
        )

    def signing_key(self) -> bytes:
        """The key envelopes are signed with: the first configured (b'' when none is)."""
        keys = self._keys()
        return keys[0] if keys else b""

    @field_validator("keys", mode="before")
    @classmethod
    def _empty_keys(cls, value: object) -> object:
        return [] if value in ("", None) else value
