"""A floor for bench/api.py: a pure ASGI app under the same uvicorn settings that reads the body
and answers 202 with a fixed JSON body, parsing nothing.

`python bench/floor_app.py PORT`. What it costs per request is the HTTP transport (uvicorn,
httptools, the loopback socket) that the bare endpoint and the API both pay; it is printed
beside them so the API's cost beyond the transport can be read off the same run.
"""

from __future__ import annotations

from typing import Any

from baseline_server import serve

_ANSWER = b'{"accepted":0}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Drain the body, answer 202."""
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [
                (b"content-length", b"%d" % len(_ANSWER)),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _ANSWER})


if __name__ == "__main__":
    serve(app)
