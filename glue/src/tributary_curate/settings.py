"""Curate settings from environment variables (read once by the entry point)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field

from tributary.settings import CommonSettings
from tributary_curate.claim import DEFAULT_TTL_S
from tributary_curate.window import DEFAULT_LATE_HOURS


class StagingMode(StrEnum):
    """Where a local run stages Spark's output (on Glue it is always S3)."""

    LOCAL = "local"  # a folder under CURATE_WORK_DIR
    S3 = "s3"  # s3://<lake>/_staging/curate/<dataset>/<run id>/, exactly as on Glue


class CurateSettings(CommonSettings):
    """The lake and catalog come from the common settings; these say how curate runs."""

    work_dir: Path = Field(default=Path(".local/curate"), validation_alias="CURATE_WORK_DIR")
    query_cache: Path = Field(
        default=Path(".local/curated-cache"), validation_alias="CURATE_QUERY_CACHE"
    )
    interval_s: float = Field(default=600.0, gt=0, validation_alias="CURATE_INTERVAL_S")
    staging: StagingMode = Field(default=StagingMode.LOCAL, validation_alias="CURATE_STAGING")
    late_hours: int = Field(default=DEFAULT_LATE_HOURS, ge=1, validation_alias="CURATE_LATE_HOURS")
    claim_ttl_s: float = Field(default=DEFAULT_TTL_S, ge=3, validation_alias="CURATE_CLAIM_TTL_S")
    snapshot_retain_s: float = Field(
        default=3600.0, ge=0, validation_alias="CURATE_SNAPSHOT_RETAIN_S"
    )  # a superseded snapshot is deleted this long after it was replaced (the previous one stays)
