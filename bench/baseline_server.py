"""How bench/api.py's baseline servers run: one uvicorn setting for all of them, so the bare,
bare-asgi and floor rows differ only in the app (`python bench/<app>.py PORT`)."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn


def serve(app: Any) -> None:
    """Serve `app` on 127.0.0.1:<argv[1]>, one worker, no access log, no server header."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        workers=1,
        access_log=False,
        log_config=None,
        log_level="warning",
        server_header=False,
    )
