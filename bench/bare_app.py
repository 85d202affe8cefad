"""The baseline for bench/api.py: a bare FastAPI endpoint that parses the body and answers 202."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()


@app.post("/v1/datasets/{dataset}/records", status_code=202)
async def records(dataset: str, request: Request) -> Response:
    """Parse with orjson and answer 202: what any ingestion endpoint must at least do."""
    parsed = orjson.loads(await request.body())
    count = len(parsed) if isinstance(parsed, list) else 1
    return Response(orjson.dumps({"accepted": count}), 202, media_type="application/json")
