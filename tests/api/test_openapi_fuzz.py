"""schemathesis against the API's own /openapi.json, over the wire (uvicorn, in-memory sink).

Every generated request must get a documented status, never a 5xx, with a body and headers that
match the schema. Requests carry a valid key, so generation reaches validation and the sink.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, checks

from tests.conftest import DATASETS_CONFIG
from tributary_api.auth import hash_key
from tributary_stack.moto import free_port
from tributary_stack.process import ManagedProcess

KEY = "fuzz-key"


@schemathesis.serializer("application/x-ndjson")
def ndjson(_: Any, value: Any) -> bytes:
    """Send generated NDJSON bodies as they are (strings), else as one JSON value."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "API_SINK": "memory",
        "API_PORT": str(port),
        "DATASETS_CONFIG": str(DATASETS_CONFIG),
        "LOG_LEVEL": "WARNING",
        "API_KEYS": json.dumps([{"name": "fuzz", "sha256": hash_key(KEY)}]),
    }
    log_path: Path = tmp_path_factory.mktemp("fuzz") / "api.log"
    with log_path.open("w") as log:
        process = ManagedProcess.python_module("api", "tributary_api", [], env, log).start()
        url = f"http://127.0.0.1:{port}"
        process.wait_http(f"{url}/healthz")
        yield url
        process.stop(timeout=10)


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json")


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def test_api_conforms_to_its_openapi(api_schema: BaseSchema) -> None:
    # Driven directly (operation strategies + hypothesis) rather than through schemathesis's
    # pytest plugin, which does not support pytest 9 yet.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/datasets/{dataset}/records", "/healthz"}
    for operation in operations:
        fuzz(operation)


def fuzz(operation: Any) -> None:
    """Generate cases for one operation and check each response against the schema."""
    auth = {"Authorization": f"Bearer {KEY}"} if operation.path.startswith("/v1/") else None

    @given(case=operation.as_strategy())
    @settings(
        max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS)

    conforms()
