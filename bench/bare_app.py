"""The baseline for bench/api.py: a bare FastAPI endpoint that parses the body and answers 202.

`python bench/bare_app.py PORT` serves it with the uvicorn settings `python -m tributary_api`
uses (one worker, the same loop and HTTP parser, no access log, no server header), so the two
differ only in what the endpoint does.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from baseline_server import serve

app = FastAPI()


@app.post("/v1/datasets/{dataset}/records", status_code=202)
async def records(request: Request) -> Response:
    """Parse with orjson and answer 202: what any ingestion endpoint must at least do. The
    dataset is read from `request.path_params` as the API reads it (no parameter solving)."""
    _dataset = request.path_params["dataset"]
    parsed = orjson.loads(await request.body())
    count = len(parsed) if isinstance(parsed, list) else 1
    return Response(orjson.dumps({"accepted": count}), 202, media_type="application/json")


if __name__ == "__main__":
    serve(app)
