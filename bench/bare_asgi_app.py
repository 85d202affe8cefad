"""The like-for-like baseline for bench/api.py: bench/floor_app.py plus `orjson.loads` of the body.

`python bench/bare_asgi_app.py PORT`. The API's ingest POST is served by a pure ASGI middleware
below FastAPI's routing (services/api/src/tributary_api/asgi.py), so it no longer pays for
FastAPI's router, `Request`, `Response` and exception middlewares; bench/bare_app.py (the
baseline the issue names) still does. This app is a bare endpoint built the same way as the
API's ingest path: drain the body, parse it with orjson, answer `{"accepted": n}`, under the
uvicorn settings `python -m tributary_api` uses.
"""

from __future__ import annotations

from typing import Any

import orjson

from baseline_server import serve


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Drain the body, parse it with orjson, answer 202 with the record count."""
    if scope["type"] != "http":
        return
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    parsed = orjson.loads(b"".join(chunks))
    answer = orjson.dumps({"accepted": len(parsed) if isinstance(parsed, list) else 1})
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [
                (b"content-length", b"%d" % len(answer)),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


if __name__ == "__main__":
    serve(app)
