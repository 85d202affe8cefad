"""Curate settings from environment variables (read once by the entry point)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tributary.settings import CommonSettings


class CurateSettings(CommonSettings):
    """The lake and catalog come from the common settings; these say how curate runs."""

    work_dir: Path = Field(default=Path(".local/curate"), validation_alias="CURATE_WORK_DIR")
    query_cache: Path = Field(
        default=Path(".local/curated-cache"), validation_alias="CURATE_QUERY_CACHE"
    )
    interval_s: float = Field(default=600.0, gt=0, validation_alias="CURATE_INTERVAL_S")
