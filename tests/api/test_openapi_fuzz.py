"""schemathesis (its CLI, every check, positive data acceptance included) against the API's own
/openapi.json, over the wire: uvicorn with the in-memory sink, a valid key on every request.

Valid data generated from each dataset's published record schema must be accepted (202), invalid
data refused with a documented 4xx, and every response must match the document.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATASETS_CONFIG, REPO
from tributary.dataset import DatasetRegistry
from tributary_api.auth import hash_key
from tributary_stack.moto import free_port
from tributary_stack.process import ManagedProcess

KEY = "fuzz-key"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = REPO / "tests" / "api" / "schemathesis.toml"


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


def test_every_dataset_has_its_record_schema(api_url: str) -> None:
    spec = httpx.get(f"{api_url}/openapi.json").json()
    ingest = {p for p in spec["paths"] if p.startswith("/v1/datasets/")}
    shipped = DatasetRegistry.from_file(DATASETS_CONFIG)  # one ingest path per dataset
    assert ingest == {f"/v1/datasets/{d}/records" for d in shipped}
    posts = spec["components"]["schemas"]["PostsRecord"]
    assert posts["required"] == ["userId", "id", "title", "body"]
    assert posts["properties"]["userId"]["minimum"] == 1
    body = spec["paths"]["/v1/datasets/events/records"]["post"]["requestBody"]
    forms = body["content"]["application/json"]["schema"]["anyOf"]
    assert forms[0] == {"$ref": "#/components/schemas/EventsRecord"}
    assert forms[2]["properties"]["records"]["maxItems"] == 500


def test_schemathesis_finds_nothing_with_every_check(api_url: str, tmp_path: Path) -> None:
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{api_url}/openapi.json",
        "-H",
        f"Authorization: Bearer {KEY}",
        "--checks",
        "all",
        "--max-examples",
        "40",
        "--seed",
        "1",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
