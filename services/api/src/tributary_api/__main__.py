"""`python -m tributary_api`: serve the API with uvicorn, as configured by the environment."""

from __future__ import annotations

import uvicorn

from tributary.log import configure_logging
from tributary_api.settings import ApiSettings


def main() -> None:
    """Run uvicorn with `API_WORKERS` workers; SIGTERM drains in-flight requests first."""
    settings = ApiSettings()
    configure_logging("api", settings.log_level)
    uvicorn.run(
        "tributary_api.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s),
        access_log=False,
        log_config=None,
        server_header=False,
    )


if __name__ == "__main__":
    main()
