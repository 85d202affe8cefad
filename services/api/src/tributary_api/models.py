"""HTTP response bodies, as pydantic models so /openapi.json documents them exactly."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RecordErrorModel(BaseModel):
    """One rejected field of one record."""

    index: int = Field(description="Position of the record in the request (0-based).")
    field: str = Field(description="Dotted path of the failing field; '' for the whole record.")
    message: str


class IngestResponse(BaseModel):
    """Outcome of a request that was processed (202, or 422 when no record was valid)."""

    accepted: int = Field(description="Records now durable in the sink.")
    rejected: int = Field(description="Records that failed validation, now in quarantine.")
    ids: list[str] = Field(description="Envelope ids of the accepted records, in request order.")
    errors: list[RecordErrorModel]
    request_id: str = Field(description="The Idempotency-Key, or an id generated for this request.")


class ErrorResponse(BaseModel):
    """A request refused as a whole: nothing of it is acknowledged (and for 4xx, written)."""

    error: str = Field(description="Machine-readable code, e.g. 'body_too_large'.")
    message: str = Field(description="What was wrong and what to do.")
    request_id: str | None = Field(
        default=None, description="On 500: quote it to the operator; the log has the cause."
    )


class HealthResponse(BaseModel):
    """Liveness or readiness."""

    status: str
    sink: str | None = None
    component: str | None = Field(
        default=None, description="On 503: the component that is not reachable (sink, quarantine)."
    )


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}

INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed body (the message says where) or bad Idempotency-Key."),
    401: _error("Missing or unknown API key."),
    404: _error(
        "Unknown dataset, or one this API key may not write: the answer is the same, and "
        "lists the datasets this key may write."
    ),
    409: _error(
        "`idempotency_key_reused`: the Idempotency-Key was used before with different records; "
        "nothing was written. An identical retry gets the first answer instead."
    ),
    413: _error("Body, record count or a record over its limit."),
    415: _error("Unsupported Content-Type or Content-Encoding."),
    422: {"model": IngestResponse, "description": "No record was valid; all are in quarantine."},
    429: {**_error("Rate limit of this API key exceeded."), "headers": RETRY_AFTER},
    500: _error("The sink refused for good (configuration); quote `request_id` to the operator."),
    503: {
        **_error("Sink unavailable or server at its in-flight bound; nothing acknowledged."),
        "headers": RETRY_AFTER,
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def ingest_openapi(datasets: list[str]) -> dict[str, Any]:
    """OpenAPI for the ingest operation's parameters and security; `openapi.per_dataset` then
    gives each dataset its own path with its record schema as the request body."""
    return {
        "parameters": [
            {
                "name": "dataset",
                "in": "path",
                "required": True,
                "description": "A dataset of the registry (DATASETS_CONFIG).",
                "schema": {"type": "string", "enum": datasets},
            },
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Makes retries safe: record ids and object keys derive from it.",
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
            },
        ],
        "security": [{"bearer": []}, {"apiKey": []}],
    }
