"""Bounded memory: a body's JSON values are counted on its bytes before it is parsed, so no body
shape costs more than a small multiple of the body cap — in-process and over the wire."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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


def posts_body(size: int = CAP) -> bytes:
    """500 valid posts, as close under `size` bytes as fits: an accepted worst-case body."""
    one = len(orjson.dumps({"userId": 1, "id": 1, "title": "", "body": "b"}))
    title = "t" * (size // 500 - one - 8)
    return orjson.dumps(
        [{"userId": 1, "id": i, "title": title, "body": "b"} for i in range(1, 501)]
    )


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


@contextmanager
def _held_kinesis_api(
    tmp_path: Path, hold: int, extra_env: dict[str, str]
) -> Iterator[tuple[ManagedProcess, str]]:
    port = free_port()
    env = {
        **os.environ,
        "API_SINK": "kinesis",
        "STREAM_NAME": "held",
        "LAKE_BUCKET": "unused",
        "ENVELOPE_SIGNING_KEY": "k" * 40,
        "DATASETS_CONFIG": str(DATASETS_CONFIG),
        "LOG_LEVEL": "WARNING",
        "API_KEYS": json.dumps([{"name": "m", "sha256": hash_key(KEY)}]),
        **extra_env,
    }
    args = ["--port", str(port), "--hold", str(hold), "--wait-s", "4"]
    with (tmp_path / "api.log").open("w") as log:
        module = "tests.api.held_kinesis_server"
        process = ManagedProcess.python_module("api", module, args, env, log).start()
        try:
            url = f"http://127.0.0.1:{port}"
            process.wait_http(f"{url}/healthz")
            yield process, url
        finally:
            process.stop(timeout=10)


def _send_keyed(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    def send(numbered: tuple[int, bytes]) -> httpx.Response:
        index, body = numbered
        with httpx.Client(timeout=120) as client:
            return client.post(
                url + "/v1/datasets/posts/records",
                content=body,
                headers={**headers, "Idempotency-Key": f"memory-{index}"},
            )

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, enumerate(bodies)))


def test_eight_concurrent_accepted_bodies_held_by_the_kinesis_sink_stay_within_the_bound(
    tmp_path: Path,
) -> None:
    """The production path: keyed requests, the Kinesis sink (signed envelopes), 8 accepted
    5 MiB bodies all in memory at once (PutRecords holds each call until all 8 wait). Each
    request may hold at most three body caps (body or parsed records, envelope lines, one
    record in flight); before, each held ~7 (body, records, the digest's re-serialisation,
    envelope lines, signed copies)."""
    with _held_kinesis_api(tmp_path, 8, {}) as (process, url):
        started = _kb(process.pid, "VmRSS")
        responses = _send_keyed(url, [posts_body()] * 8)
        working_mib = (_kb(process.pid, "VmHWM") - started) / 1024
    assert [r.status_code for r in responses] == [202] * 8
    assert all(r.json()["accepted"] == 500 for r in responses)
    assert working_mib < 3 * 8 * CAP / MIB, f"{working_mib:.0f} MiB"


def test_the_in_flight_byte_budget_refuses_with_503_when_full(tmp_path: Path) -> None:
    """API_MAX_IN_FLIGHT_BYTES bounds the bodies held at once across requests: with room for
    three 5 MiB bodies, five of eight concurrent ones are refused with 503 and Retry-After
    (nothing written for them), and memory follows the budget, not the request count."""
    budget = 3 * CAP
    with _held_kinesis_api(tmp_path, 3, {"API_MAX_IN_FLIGHT_BYTES": str(budget)}) as (process, url):
        started = _kb(process.pid, "VmRSS")
        responses = _send_keyed(url, [posts_body()] * 8)
        working_mib = (_kb(process.pid, "VmHWM") - started) / 1024
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(202) >= 3, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert refused, statuses
    assert all(r.json()["error"] == "overloaded" and r.headers["Retry-After"] for r in refused)
    assert working_mib < 3 * 3 * CAP / MIB + 2 * CAP / MIB, f"{working_mib:.0f} MiB"
