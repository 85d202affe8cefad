"""API settings from environment variables (read once by the entry point)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tributary.settings import CommonSettings
from tributary_api.body import DEFAULT_MAX_VALUES

MIN_SIGNING_KEY_CHARS = 32


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
    sink_timeout_s: float = Field(default=10.0, gt=0, validation_alias="API_SINK_TIMEOUT_S")
    sink_max_attempts: int = Field(default=8, ge=1, le=20, validation_alias="API_SINK_MAX_ATTEMPTS")
    retry_after_s: int = Field(default=1, ge=1, validation_alias="API_RETRY_AFTER_S")
    graceful_shutdown_s: float = Field(
        default=25.0, gt=0, validation_alias="API_GRACEFUL_SHUTDOWN_S"
    )
    metrics_interval_s: float = Field(default=60.0, gt=0, validation_alias="METRICS_INTERVAL_S")
    # Shared with the stream consumer, which trusts only envelopes signed with it (HMAC-SHA256).
    envelope_signing_key: SecretStr | None = Field(
        default=None, validation_alias="ENVELOPE_SIGNING_KEY"
    )

    @model_validator(mode="after")
    def _budget_holds_a_body(self) -> ApiSettings:
        if self.max_in_flight_bytes < self.max_body_bytes:
            raise ValueError(
                f"API_MAX_IN_FLIGHT_BYTES ({self.max_in_flight_bytes}) must be at least "
                f"API_MAX_BODY_BYTES ({self.max_body_bytes}): no full body could be accepted"
            )
        return self

    @model_validator(mode="after")
    def _signing_key(self) -> ApiSettings:
        key = self.envelope_signing_key
        if key is not None and len(key.get_secret_value()) < MIN_SIGNING_KEY_CHARS:
            raise ValueError(
                f"ENVELOPE_SIGNING_KEY must be at least {MIN_SIGNING_KEY_CHARS} characters"
            )
        if self.sink is SinkKind.KINESIS and key is None:
            raise ValueError(
                "API_SINK=kinesis needs ENVELOPE_SIGNING_KEY (the stream consumer's key): "
                "without it the consumer cannot tell the API's envelopes from forged ones"
            )
        return self

    def signing_key(self) -> bytes:
        """The envelope signing key as bytes (b'' when none is configured)."""
        key = self.envelope_signing_key
        return b"" if key is None else key.get_secret_value().encode()

    @field_validator("keys", mode="before")
    @classmethod
    def _empty_keys(cls, value: object) -> object:
        return [] if value in ("", None) else value
