"""Bounded memory: a body's JSON values are counted on its bytes before it is parsed, so no body
shape costs more than a small multiple of the body cap — in-process and over the wire."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import DATASETS_CONFIG
from tributary_api.auth import hash_key
from tributary_api.body import BodyError, BodyFormat, check_values, parse_records
from tributary_stack.moto import free_port
from tributary_stack.process import ManagedProcess

CAP = 5 * 1024 * 1024
MIB = 1024 * 1024
KEY = "memory-key"


def fill(unit: bytes, size: int = CAP) -> bytes:
    return b"[" + b",".join([unit] * ((size - 2) // (len(unit) + 1))) + b"]"


WORST = {
    "empty objects": fill(b"{}"),
    "empty arrays": fill(b"[]"),
    "zeros": fill(b"0"),
    "nested objects": fill(b'{"a":{}}'),
    "short strings": fill(b'"a"'),
    "one record, one huge array": b'{"x":' + fill(b"{}", CAP - 6) + b"}",
}


def values_in(value: Any) -> int:
    """JSON values in a parsed document (members and elements, and the root)."""
    if isinstance(value, dict):
        return 1 + sum(values_in(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(values_in(v) for v in value)
    return 1


@pytest.mark.parametrize("body", WORST.values(), ids=list(WORST))
def test_worst_case_bodies_are_refused_before_parsing(body: bytes) -> None:
    with pytest.raises(BodyError) as refused:
        parse_records(bytearray(body), BodyFormat.JSON)
    assert (refused.value.status, refused.value.code) == (413, "too_many_values")


def test_ndjson_lines_count_too() -> None:
    with pytest.raises(BodyError, match="more than 100000 JSON values"):
        parse_records(b"1\n" * 100_001, BodyFormat.NDJSON)
    assert len(parse_records(b"1\n" * 99_999, BodyFormat.NDJSON)) == 99_999


def test_commas_and_brackets_inside_strings_do_not_count() -> None:
    prose = {"userId": 1, "id": 1, "title": "a, b, [c], {d}, " * 600, "body": '\\"{[,'}
    body = orjson.dumps([prose] * 500)  # ~4.7 MiB, ~1.9 M commas and brackets, 2,500 values
    assert len(parse_records(body, BodyFormat.JSON)) == 500


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(alphabet=',{}[]"\\ab'),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(',{[]}"a'), inner),
    max_leaves=40,
)


@given(json_values, st.integers(1, 60))
def test_the_count_never_refuses_a_body_within_the_limit(value: Any, limit: int) -> None:
    body = orjson.dumps(value)
    exact = values_in(value)
    if exact <= limit:
        check_values(body, BodyFormat.JSON, limit)  # no refusal
    else:
        with pytest.raises(BodyError):
            check_values(body, BodyFormat.JSON, limit)


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_eight_concurrent_worst_case_bodies_stay_within_the_bound(tmp_path: Path) -> None:
    """Over the wire (uvicorn): peak RSS above the started server's stays under two body caps
    per concurrent request. Before the count, one `[{},{},…]` body alone held ~189 MB."""
    port = free_port()
    env = {
        **os.environ,
        "API_SINK": "memory",
        "API_PORT": str(port),
        "DATASETS_CONFIG": str(DATASETS_CONFIG),
        "LOG_LEVEL": "WARNING",
        "API_KEYS": json.dumps([{"name": "m", "sha256": hash_key(KEY)}]),
    }
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    with (tmp_path / "api.log").open("w") as log:
        process = ManagedProcess.python_module("api", "tributary_api", [], env, log).start()
        try:
            url = f"http://127.0.0.1:{port}"
            process.wait_http(f"{url}/healthz")
            pid = process.pid
            started = _kb(pid, "VmRSS")

            def send(body: bytes) -> int:
                with httpx.Client(timeout=120) as client:
                    path = "/v1/datasets/posts/records"
                    return client.post(url + path, content=body, headers=headers).status_code

            bodies = [WORST["empty objects"], WORST["nested objects"]] * 4
            with ThreadPoolExecutor(len(bodies)) as pool:
                statuses = list(pool.map(send, bodies))
            working_mib = (_kb(pid, "VmHWM") - started) / 1024
        finally:
            process.stop(timeout=10)
    assert statuses == [413] * len(bodies)
    assert working_mib < 2 * len(bodies) * CAP / MIB, f"{working_mib:.0f} MiB"
