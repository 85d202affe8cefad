"""`python -m tributary_fakeapi`: serve the fake API (FAKEAPI_HOST/PORT/SCALE/KEY/LATENCY_MS)."""

from __future__ import annotations

import uvicorn
from pydantic import Field
from pydantic_settings import BaseSettings

from tributary_fakeapi.app import create_app


class FakeApiSettings(BaseSettings):
    """Where to listen and how big the data set is."""

    host: str = Field(default="127.0.0.1", validation_alias="FAKEAPI_HOST")
    port: int = Field(default=8081, validation_alias="FAKEAPI_PORT")
    scale: int = Field(default=1, ge=1, validation_alias="FAKEAPI_SCALE")
    api_key: str | None = Field(default=None, validation_alias="FAKEAPI_KEY")
    latency_ms: float = Field(default=0.0, ge=0, validation_alias="FAKEAPI_LATENCY_MS")


def main() -> None:
    """Serve until SIGTERM."""
    s = FakeApiSettings()
    uvicorn.run(
        create_app(s.scale, s.api_key, s.latency_ms),
        host=s.host,
        port=s.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
