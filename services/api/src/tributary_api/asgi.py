"""The ingest route served below FastAPI's routing: a pure ASGI middleware in the same app.

`POST /v1/datasets/<dataset>/records` for a registered dataset is answered here, by the same
`Handlers.ingest_records` the FastAPI route calls, with the same answers (status, JSON body,
headers) and the same refusal metric; every other request (and a dataset the registry does not
name, answered 404 by the route) goes on to FastAPI. The route stays declared, so OpenAPI
documents the path as before. What this skips per request is FastAPI's router, exception and
exit-stack middlewares, route matching, `Request` and `Response` objects: what they cost per
request is bench/api.py's bare row minus its bare-asgi row, measured in the same run.

The middleware sits inside FastAPI's own outer middlewares (server errors, telemetry, body
limit), so an unexpected exception is a 500 exactly as on any other route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect

from tributary.dataset import DatasetRegistry
from tributary.metrics import Metrics
from tributary_api.refusal import HttpError, refusal_body

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from tributary_api.handlers import Handlers

_JSON = (b"content-type", b"application/json")


def ingest_paths(registry: DatasetRegistry) -> dict[str, str]:
    """The ingest path of each registered dataset, to the dataset's name."""
    return {f"/v1/datasets/{name}/records": name for name in registry}


class IngestMiddleware:
    """Answers ingest POSTs with `Handlers.ingest_records`; passes everything else on."""

    def __init__(
        self, app: ASGIApp, *, handlers: Handlers, metrics: Metrics, paths: dict[str, str]
    ) -> None:
        self._app = app
        self._handlers = handlers
        self._metrics = metrics
        self._paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dataset = self._paths.get(scope["path"]) if scope["type"] == "http" else None
        if dataset is None or scope["method"] != "POST" or scope.get("root_path"):
            await self._app(scope, receive, send)
            return
        # Starlette's `Headers.get`: names are lower case on the wire (ASGI), the first wins.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, body = await self._handlers.ingest_records(headers, dataset, _chunks(receive))
        except HttpError as exc:  # the app's HttpError handler, byte for byte
            self._metrics.add("RequestsRefused", 1, code=exc.code)
            status, body = exc.status, refusal_body(exc)
            extra = [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()
            ]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*extra, (b"content-length", b"%d" % len(body)), _JSON],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The body's chunks as `Request.stream` yields them (`ClientDisconnect` on a disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body: bytes = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
