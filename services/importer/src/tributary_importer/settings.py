"""Importer settings from environment variables (read once by the entry point)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tributary.settings import CommonSettings


class ImporterSettings(CommonSettings):
    """Where the sources are declared; the state lives in STATE_TABLE, objects in LAKE_BUCKET."""

    sources_config: Path = Field(
        default=Path("config/sources.yaml"), validation_alias="SOURCES_CONFIG"
    )
    interval_s: float = Field(default=300.0, gt=0, validation_alias="IMPORTER_INTERVAL_S")
