"""Conditional S3 writes on Glue 5.0's botocore.

Glue 5.0 ships boto3/botocore 1.34.131 and aiobotocore 2.13.1, which predate S3's conditional
writes: their PutObject model has no `IfNoneMatch` / `IfMatch`, and botocore refuses the unknown
parameters before sending anything. Replacing Glue's botocore is not an option (its boto3 and
s3fs pin it), so on such a client the two parameters are taken out before validation and sent
as the `If-None-Match` / `If-Match` headers S3 honours. A client whose model has them is left
alone.
"""

from __future__ import annotations

from typing import Any

_CONDITIONS = (("IfNoneMatch", "If-None-Match"), ("IfMatch", "If-Match"))
_KEY = "tributary_conditions"


def conditional_writes(s3: Any) -> bool:
    """Make `s3` send PutObject's IfNoneMatch/IfMatch as headers if its model lacks them;
    True when it had to."""
    members = s3.meta.service_model.operation_model("PutObject").input_shape.members
    if all(name in members for name, _ in _CONDITIONS):
        return False

    def take(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        found = {header: params.pop(name) for name, header in _CONDITIONS if name in params}
        if found:
            context[_KEY] = found

    def send(request: Any, **_: Any) -> None:
        for header, value in getattr(request, "context", {}).get(_KEY, {}).items():
            request.headers[header] = value

    s3.meta.events.register("before-parameter-build.s3.PutObject", take)
    s3.meta.events.register("before-sign.s3.PutObject", send)
    return True
