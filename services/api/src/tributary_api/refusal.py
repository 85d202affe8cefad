"""Whole-request refusals: the HTTP answer for each way an ingest can fail, and what is logged."""

from __future__ import annotations

import logging

import orjson

from tributary.errors import PermanentError, TransientError
from tributary_api.idempotency import IdempotencyConflictError
from tributary_api.ingest import RecordTooLargeError

log = logging.getLogger(__name__)


class HttpError(Exception):
    """A whole-request refusal, rendered as `ErrorResponse`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.request_id = request_id


def refusal_body(exc: HttpError) -> bytes:
    """The JSON body of `exc`'s answer (`ErrorResponse`)."""
    body = {"error": exc.code, "message": exc.message}
    if exc.request_id is not None:
        body["request_id"] = exc.request_id
    return orjson.dumps(body)


def ingest_refusal(
    exc: BaseException,
    dataset: str,
    request_id: str,
    retry_after: dict[str, str],
    idempotent: bool = True,
) -> HttpError:
    """The answer to an ingest that raised `exc`, logging what the operator needs.

    `idempotent`: whether the producer sent an Idempotency-Key (the advice on retrying differs).
    """
    if isinstance(exc, RecordTooLargeError):
        return HttpError(413, "record_too_large", str(exc))
    if isinstance(exc, IdempotencyConflictError):
        return HttpError(
            409,
            "idempotency_key_reused",
            f"Idempotency-Key {request_id!r} was already used with different records; "
            "nothing was written. Send new records with a new Idempotency-Key.",
        )
    if isinstance(exc, PermanentError):
        # A refusal that retrying cannot cure (credentials, permissions, a missing stream):
        # the operator must act, so the producer is not invited to retry.
        log.error(
            "sink refused; request not acknowledged",
            extra={"dataset": dataset, "request_id": request_id, "error": str(exc)},
        )
        return HttpError(
            500,
            "internal_error",
            f"the server could not store the records (request {request_id}); nothing was "
            "acknowledged. The operator has been told; retrying will not help until then.",
            request_id=request_id,
        )
    if not isinstance(exc, TransientError | TimeoutError):
        raise TypeError(f"not an ingest failure: {exc!r}") from exc
    log.warning(
        "sink failed; request not acknowledged",
        extra={"dataset": dataset, "request_id": request_id, "error": str(exc) or "timed out"},
    )
    advice = (
        "Retry with the same Idempotency-Key: a retry writes the same ids and object keys, so "
        "nothing is duplicated downstream."
        if idempotent
        else "Retry, and send an Idempotency-Key to make retries safe: without one a retry gets "
        "new ids, so records the sink already took may land twice."
    )
    return HttpError(
        503, "sink_unavailable", f"records were not acknowledged. {advice}", retry_after
    )
