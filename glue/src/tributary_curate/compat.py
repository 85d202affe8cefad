"""Conditional S3 writes on Glue 5.0's botocore.

Glue 5.0 ships boto3/botocore 1.34.131 and aiobotocore 2.13.1, which predate S3's conditional
writes: their PutObject model has no `IfNoneMatch` / `IfMatch` (nor DeleteObject `IfMatch`, the
claim's release), and botocore refuses the unknown parameters before sending anything.
Replacing Glue's botocore is not an option (its boto3 and s3fs pin it), so on such a client the
parameters are taken out before validation and sent as the `If-None-Match` / `If-Match` headers
S3 honours (moto too). A client whose model has them is left alone.
"""

from __future__ import annotations

from typing import Any

_CONDITIONS = (("IfNoneMatch", "If-None-Match"), ("IfMatch", "If-Match"))
_OPERATIONS = {"PutObject": _CONDITIONS, "DeleteObject": _CONDITIONS[1:]}
_KEY = "tributary_conditions"


def conditional_writes(s3: Any) -> bool:
    """Make `s3` send PutObject's IfNoneMatch/IfMatch and DeleteObject's IfMatch as headers
    where its model lacks them; True when it had to."""
    shimmed = False
    for operation, conditions in _OPERATIONS.items():
        members = s3.meta.service_model.operation_model(operation).input_shape.members
        if not all(name in members for name, _ in conditions):
            _shim(s3, operation, conditions)
            shimmed = True
    return shimmed


def _shim(s3: Any, operation: str, conditions: tuple[tuple[str, str], ...]) -> None:
    def take(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        found = {header: params.pop(name) for name, header in conditions if name in params}
        if found:
            context[_KEY] = found

    def send(request: Any, **_: Any) -> None:
        for header, value in getattr(request, "context", {}).get(_KEY, {}).items():
            request.headers[header] = value

    s3.meta.events.register(f"before-parameter-build.s3.{operation}", take)
    s3.meta.events.register(f"before-sign.s3.{operation}", send)
