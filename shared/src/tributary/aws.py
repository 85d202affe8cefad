"""AWS clients from aiobotocore, configured once for every service.

botocore itself honours `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`), which is how the
embedded stack points every client at moto; nothing here special-cases local runs.
"""

from __future__ import annotations

import builtins
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from tributary.errors import PermanentError, SinkUnavailableError
from tributary.settings import AwsSettings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_glue import GlueClient
    from types_aiobotocore_kinesis import KinesisClient
    from types_aiobotocore_s3 import S3Client


def client_config(settings: AwsSettings) -> AioConfig:
    """Retry mode `standard` (throttling-aware, capped) and a connection pool sized for us."""
    return AioConfig(
        retries={"mode": "standard", "max_attempts": settings.aws_max_attempts},
        max_pool_connections=settings.aws_max_pool_connections,
        connect_timeout=5,
        read_timeout=30,
    )


class AwsClients:
    """Opens the clients a service needs and closes them together."""

    def __init__(self, settings: AwsSettings) -> None:
        self._settings = settings
        self._session = get_session()
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> AwsClients:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.__aexit__(None, None, None)

    async def _open(self, service: str) -> Any:
        creator = self._session.create_client(
            service,  # type: ignore[call-overload]
            region_name=self._settings.aws_region,
            # None lets botocore resolve it (AWS_ENDPOINT_URL_<SERVICE>, then AWS itself).
            endpoint_url=self._endpoint(service),
            config=client_config(self._settings),
        )
        return await self._stack.enter_async_context(creator)

    def _endpoint(self, service: str) -> str | None:
        if service == "kinesis" and self._settings.kinesis_endpoint_url:
            return self._settings.kinesis_endpoint_url
        return self._settings.aws_endpoint_url

    async def s3(self) -> S3Client:
        """An S3 client, closed with this object."""
        client: S3Client = await self._open("s3")
        return client

    async def kinesis(self) -> KinesisClient:
        """A Kinesis client, closed with this object."""
        client: KinesisClient = await self._open("kinesis")
        return client

    async def dynamodb(self) -> DynamoDBClient:
        """A DynamoDB client, closed with this object."""
        client: DynamoDBClient = await self._open("dynamodb")
        return client

    async def glue(self) -> GlueClient:
        """A Glue client, closed with this object."""
        client: GlueClient = await self._open("glue")
        return client


# Error codes that mean "try again later" even though some arrive as 4xx.
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMSThrottlingException",
        "ConditionalRequestConflict",
    }
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore `ClientError` ('' for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


OSConnectionError = builtins.ConnectionError  # refused, reset, aborted, broken pipe


def is_transient_aws_error(exc: BaseException) -> bool:
    """True for throttling, 5xx, timeouts and connection failures; False for everything else.

    Other botocore errors (no credentials, parameter validation, an unknown region) are faults of
    the configuration or the code: retrying them only hides the cause, so they are permanent.
    """
    import ssl

    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        CredentialRetrievalError,
        HTTPClientError,
        SSLError,
    )

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in _TRANSIENT_CODES or status >= 500 or status in (408, 429)
    if isinstance(exc, SSLError | ssl.SSLError):  # a certificate that does not verify: config
        return False
    # A failed fetch from the credential endpoint (ECS, IMDS) is a blip; no credentials at all
    # (NoCredentialsError) is configuration. Of OS errors only broken connections are transient.
    return isinstance(
        exc,
        ConnectionError
        | HTTPClientError
        | CredentialRetrievalError
        | OSConnectionError
        | TimeoutError,
    )


def translate_aws_error(
    exc: BaseException, what: str, hint: str
) -> SinkUnavailableError | PermanentError:
    """Our error for a botocore failure: transient ones say retry, others carry `hint`."""
    code = error_code(exc) or type(exc).__name__
    if is_transient_aws_error(exc):
        return SinkUnavailableError(f"{what} failed ({code}); retry later")
    return PermanentError(f"{what} refused ({code}); {hint}")
