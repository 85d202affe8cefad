"""A fault-injecting HTTP proxy in front of the embedded AWS, for failure tests over the wire.

Point `AWS_ENDPOINT_URL` at the proxy instead of moto, then change `proxy.faults` while load
runs. Injected failures look like AWS's own: a PutRecords partial failure reports the chosen
entries with an `ErrorCode` and does not forward them (so they are really not in the stream),
an outage answers 503 `ServiceUnavailable` in the service's own error format. With
`record=True` it keeps every request (signer's access key, operation, path, body) in
`proxy.recorded`, for checking calls against IAM policies.
"""

from __future__ import annotations

import asyncio
import html
import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import uvicorn

from tributary_stack.moto import free_port, wait_for_port

_JSON_TARGETS = {"Kinesis_20131202": "kinesis", "DynamoDB_20120810": "dynamodb", "AWSGlue": "glue"}

Scope = dict[str, Any]
Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One request as it crossed the proxy: who signed it and what it asked for."""

    access_key: str  # from the SigV4 Authorization header ("" when unsigned)
    service: str
    operation: str  # X-Amz-Target's operation; "" for S3 (REST: see method, path, query)
    method: str
    path: str
    query: str
    body: dict[str, Any]  # the JSON protocols' request body; {} for S3
    header_names: frozenset[str] = frozenset()  # lower-case, e.g. x-amz-copy-source (CopyObject)
    copy_source: str = ""  # x-amz-copy-source: the object CopyObject reads
    delete_keys: tuple[str, ...] = ()  # the keys of an S3 DeleteObjects (POST ?delete) body


@dataclass
class Faults:
    """What to break. Mutate it from the test while the proxy runs."""

    down: set[str] = field(default_factory=set)  # services answered with 503: kinesis, s3, ...
    put_records_fail_fraction: float = 0.0  # share of PutRecords entries reported failed
    put_records_max_failures: int = 2  # per distinct entry (by data), so retries can succeed
    put_records_error_code: str = "ProvisionedThroughputExceededException"
    throttle_put_records: bool = False  # whole PutRecords calls refused with a throttling error
    latency_s: float = 0.0  # added before answering every request
    # create-only S3 puts (If-None-Match) answered 409 ConditionalRequestConflict, as S3 does
    # while another conditional write to the same key is in progress
    s3_conditional_conflict: bool = False
    # Requests `hold(call)` is True for are never forwarded: they wait (`held` is set) until
    # `hold` is cleared, then get a 503; for killing a client in a known step (kill -9 while
    # its request hangs: the request never reached AWS).
    hold: Callable[[RecordedCall], bool] | None = None
    held: threading.Event = field(default_factory=threading.Event)
    seed: int = 7


def _service(headers: dict[str, str]) -> tuple[str, str]:
    """(service, operation) of a request: JSON protocols carry X-Amz-Target, S3 does not."""
    target = headers.get("x-amz-target", "")
    prefix, _, operation = target.partition(".")
    return _JSON_TARGETS.get(prefix, "s3" if not target else prefix), operation


class FaultProxy:
    """Forwards to `upstream` on a free loopback port, failing as `faults` says."""

    def __init__(
        self, upstream: str, host: str = "127.0.0.1", port: int = 0, *, record: bool = False
    ) -> None:
        self.upstream = upstream
        self.recorded: list[RecordedCall] | None = [] if record else None
        self.host = host
        self.port = port or free_port(host)
        self.faults = Faults()
        self.calls: Counter[str] = Counter()  # "service.operation" -> count
        self.injected: Counter[str] = Counter()
        self._entry_failures: Counter[str] = Counter()
        self._rng = random.Random(self.faults.seed)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def endpoint(self) -> str:
        """The value for AWS_ENDPOINT_URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        """Serve in a background thread."""
        config = uvicorn.Config(
            self._app,
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fault-proxy", daemon=True)
        self._thread.start()
        wait_for_port(self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _app(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client died mid-request (kill -9): like a network, forward nothing
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        service, operation = _service(headers)
        self.calls[f"{service}.{operation}"] += 1
        if self.recorded is not None:
            self.recorded.append(_record(scope, headers, body, service, operation))
        status, out_headers, out_body = await self._handle(scope, headers, body, service, operation)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in out_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": out_body})

    async def _handle(
        self, scope: Scope, headers: dict[str, str], body: bytes, service: str, operation: str
    ) -> tuple[int, dict[str, str], bytes]:
        faults = self.faults
        hold = faults.hold
        if hold is not None and hold(_record(scope, headers, body, service, operation)):
            faults.held.set()
            # cleared from the test's thread: an asyncio.Event belongs to the proxy's loop
            while faults.hold is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            self.injected[f"{service}.held"] += 1
            return _error(service, 503, "ServiceUnavailable", "held request dropped")
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        if service in faults.down:
            self.injected[f"{service}.down"] += 1
            return _error(service, 503, "ServiceUnavailable", "injected outage")
        if (
            service == "s3"
            and faults.s3_conditional_conflict
            and scope["method"] == "PUT"
            and "if-none-match" in headers
        ):
            self.injected["s3.conditional_conflict"] += 1
            return _error(
                service, 409, "ConditionalRequestConflict", "injected concurrent conditional write"
            )
        if service == "kinesis" and operation == "PutRecords":
            if faults.throttle_put_records:
                self.injected["kinesis.throttle"] += 1
                return _error(
                    service, 400, "ProvisionedThroughputExceededException", "injected throttling"
                )
            if faults.put_records_fail_fraction > 0:
                return await self._partial_put_records(scope, headers, body)
        return await self._forward(scope, headers, body)

    async def _partial_put_records(
        self, scope: Scope, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        request = orjson.loads(body)
        entries = request["Records"]
        failed = set()
        for i, entry in enumerate(entries):
            seen = self._entry_failures[entry["Data"]]
            if seen < self.faults.put_records_max_failures and (
                self._rng.random() < self.faults.put_records_fail_fraction
            ):
                self._entry_failures[entry["Data"]] = seen + 1
                failed.add(i)
        self.injected["kinesis.put_records_entry"] += len(failed)
        kept = [e for i, e in enumerate(entries) if i not in failed]
        results: list[dict[str, Any]] = []
        if kept:
            status, out_headers, out_body = await self._forward(
                scope, headers, orjson.dumps({**request, "Records": kept})
            )
            if status != 200:
                return status, out_headers, out_body
            results = orjson.loads(out_body)["Records"]
        merged, forwarded = [], iter(results)
        for i in range(len(entries)):
            if i in failed:
                merged.append(
                    {
                        "ErrorCode": self.faults.put_records_error_code,
                        "ErrorMessage": "injected partial failure",
                    }
                )
            else:
                merged.append(next(forwarded))
        answer = {"FailedRecordCount": len(failed), "Records": merged}
        return 200, {"content-type": "application/x-amz-json-1.1"}, orjson.dumps(answer)

    async def _forward(
        self, scope: Scope, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=60)
        query = scope.get("query_string", b"").decode()
        url = self.upstream + scope["raw_path"].decode() + (f"?{query}" if query else "")
        # Host stays the client's: it is part of the SigV4 signature moto checks under IAM.
        hop = ("content-length", "transfer-encoding", "connection")
        forward = {k: v for k, v in headers.items() if k not in hop}
        request = self._client.build_request(scope["method"], url, headers=forward, content=body)
        try:
            response = await self._client.send(request, stream=True)
            try:  # raw bytes: an S3 object stored gzip must reach the client still gzip
                content = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.TransportError:
            return 502, {"content-type": "text/plain"}, b"upstream unreachable"
        # A HEAD answer has no body but must keep the object's Content-Length.
        dropped = ("transfer-encoding", "connection") + (
            () if scope["method"] == "HEAD" else ("content-length",)
        )
        out = {k: v for k, v in response.headers.items() if k.lower() not in dropped}
        return response.status_code, out, content


def _record(
    scope: Scope, headers: dict[str, str], body: bytes, service: str, operation: str
) -> RecordedCall:
    credential = headers.get("authorization", "").partition("Credential=")[2]
    document: Any = orjson.loads(body) if service != "s3" and body else {}
    deleted: tuple[str, ...] = ()
    if service == "s3" and scope["method"] == "POST" and b"<Delete" in body:
        keys = re.findall(rb"<Key>(.*?)</Key>", body, re.S)
        deleted = tuple(html.unescape(k.decode()) for k in keys)
    return RecordedCall(
        access_key=credential.partition("/")[0],
        service=service,
        operation=operation,
        method=scope["method"],
        path=scope["raw_path"].decode(),
        query=scope.get("query_string", b"").decode(),
        body=document if isinstance(document, dict) else {},
        header_names=frozenset(k.lower() for k in headers),
        copy_source=unquote(headers.get("x-amz-copy-source", "")),
        delete_keys=deleted,
    )


def _error(service: str, status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    """An AWS-shaped error: XML for S3, JSON (`__type`) for the JSON protocols."""
    if service == "s3":
        xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        return status, {"content-type": "application/xml"}, xml.encode()
    body = orjson.dumps({"__type": code, "message": message})
    return status, {"content-type": "application/x-amz-json-1.1"}, body
