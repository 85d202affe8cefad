"""Settings of the embedded local stack (`make up`, `make demo`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    """Ports, names and the dev API key of the local stack; every value has a default."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", validation_alias="STACK_HOST")
    aws_port: int = Field(default=4566, ge=0, le=65535, validation_alias="STACK_AWS_PORT")
    api_port: int = Field(default=8000, ge=0, le=65535, validation_alias="STACK_API_PORT")
    shards: int = Field(default=4, ge=1, le=64, validation_alias="STACK_SHARDS")
    api_key: str = Field(default="local-dev-key", min_length=8, validation_alias="STACK_API_KEY")
    api_sink: str = Field(default="kinesis", validation_alias="STACK_API_SINK")
    consumers: int = Field(default=2, ge=0, le=16, validation_alias="STACK_CONSUMERS")
    fakeapi_port: int = Field(default=8081, ge=0, le=65535, validation_alias="STACK_FAKEAPI_PORT")
    importer_interval_s: float = Field(
        default=30, gt=0, validation_alias="STACK_IMPORTER_INTERVAL_S"
    )
    importer_loop: bool = Field(default=True, validation_alias="STACK_IMPORTER_LOOP")
    curate_interval_s: float = Field(default=120, gt=0, validation_alias="STACK_CURATE_INTERVAL_S")
    curate_loop: bool = Field(default=True, validation_alias="STACK_CURATE_LOOP")
    stop_timeout_s: float = Field(default=30, gt=0, validation_alias="STACK_STOP_TIMEOUT_S")
    env_file: Path = Field(default=Path(".local/stack.env"), validation_alias="STACK_ENV_FILE")
    region: str = Field(default="us-east-1", validation_alias="AWS_REGION")
    lake_bucket: str = Field(default="tributary-lake", validation_alias="LAKE_BUCKET")
    stream_name: str = Field(default="tributary-ingest", validation_alias="STREAM_NAME")
    lease_table: str = Field(default="tributary-leases", validation_alias="LEASE_TABLE")
    state_table: str = Field(default="tributary-state", validation_alias="STATE_TABLE")
    glue_database: str = Field(default="tributary", validation_alias="GLUE_DATABASE")
    datasets_config: Path = Field(
        default=Path("config/datasets.yaml"), validation_alias="DATASETS_CONFIG"
    )
    sources_config: Path = Field(
        default=Path("config/sources.yaml"), validation_alias="SOURCES_CONFIG"
    )

    def one_off(self, env_file: Path) -> StackSettings:
        """These settings for a run that drives the pipeline itself (the demo, a test): free
        ports, so it runs beside a `make up`; no importer or curate loop; its own env file."""
        return self.model_copy(
            update={
                "aws_port": 0,
                "api_port": 0,
                "fakeapi_port": 0,
                "importer_loop": False,
                "curate_loop": False,
                "env_file": env_file,
            }
        )
