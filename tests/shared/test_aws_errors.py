"""Which botocore failures are worth retrying: only throttling, timeouts, 5xx and connections."""

from __future__ import annotations

import ssl

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ReadTimeoutError,
    SSLError,
)

from tributary.aws import is_transient_aws_error, translate_aws_error
from tributary.errors import PermanentError, SinkUnavailableError


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutRecords",
    )


TRANSIENT = {
    "throttling": client_error("ProvisionedThroughputExceededException", 400),
    "slow down": client_error("SlowDown", 503),
    "5xx": client_error("InternalFailure", 500),
    "unknown 5xx": client_error("Whatever", 502),
    "429": client_error("TooManyRequests", 429),
    "connect timeout": ConnectTimeoutError(endpoint_url="http://x"),
    "read timeout": ReadTimeoutError(endpoint_url="http://x"),
    "connection refused": EndpointConnectionError(endpoint_url="http://x"),
    "connection closed": ConnectionClosedError(endpoint_url="http://x"),
    "connection reset": ConnectionResetError("reset"),
    "broken pipe": BrokenPipeError(),
    "timeout": TimeoutError(),
    "conditional request conflict (409)": client_error("ConditionalRequestConflict", 409),
    # The ECS/EC2 credential endpoint blinked: the next attempt usually gets credentials.
    "credential endpoint": CredentialRetrievalError(provider="container-role", error_msg="503"),
}
PERMANENT = {
    "access denied": client_error("AccessDeniedException", 400),
    "no such stream": client_error("ResourceNotFoundException", 400),
    "no credentials": NoCredentialsError(),
    "parameter validation": ParamValidationError(report="Invalid type for parameter Data"),
    "no region": NoRegionError(),
    # A certificate that does not verify is a misconfiguration (a proxy, a wrong endpoint).
    "ssl (botocore)": SSLError(endpoint_url="https://x", error=ssl.SSLError("bad cert")),
    "ssl certificate": ssl.SSLCertVerificationError("certificate verify failed"),
    "os error that is no connection": PermissionError("no access to the CA bundle"),
    "file not found": FileNotFoundError("ca.pem"),
}


@pytest.mark.parametrize("exc", TRANSIENT.values(), ids=list(TRANSIENT))
def test_transient_failures_are_retried(exc: BaseException) -> None:
    assert is_transient_aws_error(exc)
    assert isinstance(translate_aws_error(exc, "put", "hint"), SinkUnavailableError)


@pytest.mark.parametrize("exc", PERMANENT.values(), ids=list(PERMANENT))
def test_configuration_faults_are_permanent(exc: BaseException) -> None:
    assert not is_transient_aws_error(exc)
    translated = translate_aws_error(exc, "put", "check the task's IAM permissions")
    assert isinstance(translated, PermanentError)
    assert "check the task's IAM permissions" in str(translated)
