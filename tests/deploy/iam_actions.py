"""Recorded requests → (IAM action, resource ARNs, condition context), from botocore's service
models: the operation is identified the way AWS does (S3: method, path and query against each
operation's requestUri, plus its required query and header members; the JSON protocols:
X-Amz-Target, checked against the model), then mapped to IAM by the tables below. An operation
the tables do not know fails: a new call is authorized on purpose, never guessed."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.session

from tributary_stack.faultproxy import RecordedCall

ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class Authorization:
    """One IAM check a request makes (a request may make several: CopyObject, DeleteObjects)."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


class UnknownOperationError(AssertionError):
    """A request this module cannot map to IAM: add it to the tables on purpose."""


@functools.cache
def _model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


@dataclass(frozen=True, slots=True)
class _Route:
    name: str
    method: str
    has_key: bool
    literals: tuple[tuple[str, str | None], ...]  # query literals of the requestUri
    required_query: tuple[str, ...]
    required_headers: tuple[str, ...]


@functools.cache
def _s3_routes() -> tuple[_Route, ...]:
    model = _model("s3")
    routes = []
    for name in model.operation_names:
        op = model.operation_model(name)
        path, _, query = op.http["requestUri"].partition("?")
        literals = tuple(
            (k, v or None) for k, _, v in (part.partition("=") for part in query.split("&") if part)
        )
        shape = op.input_shape
        required = shape.required_members if shape is not None else []
        members = shape.members if shape is not None else {}
        located = [
            (members[m].serialization.get("location"), members[m].serialization) for m in required
        ]
        routes.append(
            _Route(
                name=name,
                method=op.http["method"],
                has_key="{Key+}" in path,
                literals=literals,
                required_query=tuple(s["name"] for loc, s in located if loc == "querystring"),
                required_headers=tuple(s["name"].lower() for loc, s in located if loc == "header"),
            )
        )
    return tuple(routes)


def s3_operation(call: RecordedCall) -> str:
    """The S3 operation of a recorded REST request (path-style addressing)."""
    _bucket, _, key = call.path.lstrip("/").partition("/")
    query = {k: v[0] for k, v in parse_qs(call.query, keep_blank_values=True).items()}
    scored: dict[int, list[str]] = {}
    for route in _s3_routes():
        if route.method != call.method or route.has_key != bool(key):
            continue
        if any(k not in query or (v is not None and query[k] != v) for k, v in route.literals):
            continue
        if any(q not in query for q in route.required_query):
            continue
        if any(h not in call.header_names for h in route.required_headers):
            continue
        score = len(route.literals) + len(route.required_query) + len(route.required_headers)
        scored.setdefault(score, []).append(route.name)
    if not scored:
        raise UnknownOperationError(
            f"no S3 operation matches {call.method} {call.path}?{call.query}"
        )
    best = scored[max(scored)]
    if len(best) != 1:
        raise UnknownOperationError(f"ambiguous S3 request {call}: {best}")
    return best[0]


_OBJECT_ACTIONS = {
    "PutObject": "s3:PutObject",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
}
_BUCKET_LISTINGS = {"ListObjectsV2", "ListObjects", "HeadBucket"}  # all s3:ListBucket


def _s3(call: RecordedCall) -> list[Authorization]:
    bucket, _, key = call.path.lstrip("/").partition("/")
    key = unquote(key)
    operation = s3_operation(call)
    arn = f"arn:aws:s3:::{bucket}"
    if operation in _OBJECT_ACTIONS:
        return [Authorization(_OBJECT_ACTIONS[operation], f"{arn}/{key}")]
    if operation == "CopyObject":
        source_bucket, _, source_key = call.copy_source.lstrip("/").partition("/")
        source_key = source_key.partition("?versionId=")[0]
        return [
            Authorization("s3:PutObject", f"{arn}/{key}"),
            Authorization("s3:GetObject", f"arn:aws:s3:::{source_bucket}/{source_key}"),
        ]
    if operation == "DeleteObjects":
        assert call.delete_keys, f"DeleteObjects without keys recorded: {call}"
        return [Authorization("s3:DeleteObject", f"{arn}/{k}") for k in call.delete_keys]
    if operation in _BUCKET_LISTINGS:
        query = {k: v[0] for k, v in parse_qs(call.query, keep_blank_values=True).items()}
        context = (("s3:prefix", query["prefix"]),) if "prefix" in query else ()
        return [Authorization("s3:ListBucket", arn, context)]
    raise UnknownOperationError(f"S3 {operation} has no IAM mapping here: {call}")


def _kinesis(call: RecordedCall, default_stream: str) -> list[str]:
    known = {"PutRecord", "PutRecords", "DescribeStreamSummary", "DescribeStream", "ListShards",
             "GetShardIterator", "GetRecords"}  # fmt: skip
    if call.operation not in known:
        raise UnknownOperationError(f"kinesis:{call.operation} has no IAM mapping here")
    body = call.body
    # GetRecords names only an iterator: the stream it was taken on (the test has one).
    name = body.get("StreamName") or body.get("StreamARN", "").rpartition("/")[2] or default_stream
    return [f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"]


def _dynamodb(call: RecordedCall) -> list[str]:
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
    body = call.body
    single = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "DescribeTable", "Query", "Scan"}
    if call.operation in single:
        arn = f"{table}/{body['TableName']}"
        return [f"{arn}/index/{body['IndexName']}" if "IndexName" in body else arn]
    if call.operation in ("BatchWriteItem", "BatchGetItem"):
        return [f"{table}/{t}" for t in body["RequestItems"]]
    raise UnknownOperationError(f"dynamodb:{call.operation} has no IAM mapping here")


def _glue(call: RecordedCall) -> list[str]:
    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    body = call.body
    if call.operation in ("StartCrawler", "GetCrawler"):
        return [f"{glue}:crawler/{body['Name']}"]
    if call.operation in ("GetDatabase", "CreateDatabase", "UpdateDatabase"):
        name = body.get("Name") or body["DatabaseInput"]["Name"]
        return [f"{glue}:catalog", f"{glue}:database/{name}"]
    if call.operation == "GetTables":
        database = body["DatabaseName"]
        return [f"{glue}:catalog", f"{glue}:database/{database}", f"{glue}:table/{database}/*"]
    tables = {"GetTable", "CreateTable", "UpdateTable", "GetPartition", "GetPartitions",
              "CreatePartition", "BatchCreatePartition", "BatchGetPartition", "UpdatePartition",
              "BatchUpdatePartition"}  # fmt: skip
    if call.operation in tables:
        database = body["DatabaseName"]
        table = body.get("TableName") or body.get("Name") or body["TableInput"]["Name"]
        return [
            f"{glue}:catalog",
            f"{glue}:database/{database}",
            f"{glue}:table/{database}/{table}",
        ]
    raise UnknownOperationError(f"glue:{call.operation} has no IAM mapping here")


def authorizations(call: RecordedCall, default_stream: str) -> list[Authorization]:
    """Every IAM check AWS makes for this request."""
    if call.service == "s3":
        return _s3(call)
    if call.service not in ("kinesis", "dynamodb", "glue"):
        raise UnknownOperationError(f"no IAM mapping for service {call.service}: {call}")
    if call.operation not in _model(call.service).operation_names:
        raise UnknownOperationError(f"{call.service} has no operation {call.operation!r}")
    action = f"{call.service}:{call.operation}"
    if call.service == "kinesis":
        arns = _kinesis(call, default_stream)
    elif call.service == "dynamodb":
        arns = _dynamodb(call)
    else:
        arns = _glue(call)
    return [Authorization(action, arn) for arn in arns]
