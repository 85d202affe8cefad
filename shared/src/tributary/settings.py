"""Settings shared by every service: AWS location and the names of the lake's resources.

Values come from environment variables only (12-factor). They are read once, at start-up, by the
service's entry point; nothing reads them at import time. The names match the outputs of the
Copilot environment addons, so nothing changes between the embedded stack and AWS.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATASETS_CONFIG = Path("config/datasets.yaml")


class AwsSettings(BaseSettings):
    """Where AWS is and which lake resources to use."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    aws_region: str = Field(default="us-east-1", validation_alias="AWS_REGION")
    # The standard botocore variable: points every client at the embedded AWS locally.
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    # botocore's per-service variables win over AWS_ENDPOINT_URL, as botocore itself does
    # (e.g. Kinesis on kinesis-local while S3 and DynamoDB are on moto).
    kinesis_endpoint_url: str | None = Field(
        default=None, validation_alias="AWS_ENDPOINT_URL_KINESIS"
    )
    lake_bucket: str = Field(default="tributary-lake", validation_alias="LAKE_BUCKET")
    stream_name: str = Field(default="tributary-ingest", validation_alias="STREAM_NAME")
    lease_table: str = Field(default="tributary-leases", validation_alias="LEASE_TABLE")
    state_table: str = Field(default="tributary-state", validation_alias="STATE_TABLE")
    # The stream consumers' heartbeats and leader lock (KCL 3.x's coordinator state), kept out
    # of the lease table, whose every row older consumers read as a lease. Unset: "<lease>-fleet".
    fleet_table_override: str | None = Field(default=None, validation_alias="FLEET_TABLE")
    glue_database: str = Field(default="tributary", validation_alias="GLUE_DATABASE")
    aws_max_attempts: int = Field(default=3, ge=1, le=10, validation_alias="AWS_MAX_ATTEMPTS")
    aws_max_pool_connections: int = Field(
        default=32, ge=1, le=1000, validation_alias="AWS_MAX_POOL_CONNECTIONS"
    )

    @property
    def fleet_table(self) -> str:
        """FLEET_TABLE, or the lease table's name with `-fleet`."""
        return self.fleet_table_override or f"{self.lease_table}-fleet"


class CommonSettings(AwsSettings):
    """AWS settings plus the dataset registry and logging every service needs."""

    datasets_config: Path = Field(
        default=DEFAULT_DATASETS_CONFIG, validation_alias="DATASETS_CONFIG"
    )
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    metrics_namespace: str = Field(default="Tributary", validation_alias="METRICS_NAMESPACE")
    # `{database}` and `{dataset}` are filled in; the deploy's addon creates crawlers so named.
    crawler_name: str = Field(
        default="{database}-{dataset}-curated", validation_alias="CURATE_CRAWLER_NAME"
    )

    def crawler_for(self, dataset: str) -> str:
        """The crawler of a dataset's curated table."""
        return self.crawler_name.format(database=self.glue_database, dataset=dataset)
