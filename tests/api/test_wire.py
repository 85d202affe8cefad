"""The API as it runs in production — `python -m tributary_api` under uvicorn — over the wire,
against moto server, with a fault-injecting proxy in front of it where the test breaks AWS."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import DATASETS_CONFIG
from tributary.settings import AwsSettings
from tributary_api.auth import hash_key
from tributary_stack import samples
from tributary_stack.faultproxy import FaultProxy
from tributary_stack.inspect import read_lines, read_objects, read_stream
from tributary_stack.moto import MotoServer, free_port
from tributary_stack.process import ManagedProcess

KEY = "wire-test-key"
SIGNING_KEY = "wire-test-envelope-signing-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


class RunningApi:
    def __init__(self, process: ManagedProcess, url: str) -> None:
        self.process = process
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=60, headers=AUTH)

    def post(self, dataset: str, records: Any, **headers: str) -> httpx.Response:
        return self.client.post(f"/v1/datasets/{dataset}/records", json=records, headers=headers)


StartApi = Callable[..., RunningApi]


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[StartApi]:
    """Start the API as a subprocess against `endpoint` with `lake`'s resource names."""
    started: list[RunningApi] = []
    logs: list[Any] = []

    def start(lake: AwsSettings, endpoint: str, **env: str) -> RunningApi:
        port = free_port()
        full_env = {
            **os.environ,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": lake.aws_region,
            "LAKE_BUCKET": lake.lake_bucket,
            "STREAM_NAME": lake.stream_name,
            "DATASETS_CONFIG": str(DATASETS_CONFIG),
            "API_KEYS": json.dumps([{"name": "wire", "sha256": hash_key(KEY)}]),
            "API_PORT": str(port),
            "API_SINK_TIMEOUT_S": "8",
            "METRICS_INTERVAL_S": "3600",
            "ENVELOPE_SIGNING_KEY": SIGNING_KEY,
            **env,
        }
        log = (tmp_path / f"api-{port}.log").open("w")
        logs.append(log)
        process = ManagedProcess.python_module("api", "tributary_api", [], full_env, log).start()
        api = RunningApi(process, f"http://127.0.0.1:{port}")
        started.append(api)
        process.wait_http(f"{api.url}/healthz")
        return api

    yield start
    for api in started:
        api.client.close()
        api.process.stop(timeout=10)
    for log in logs:
        log.close()


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto.endpoint) as running:
        yield running


def stream_ids(lake: AwsSettings) -> Counter[str]:
    return Counter(r.envelope.id for r in asyncio.run(read_stream(lake)))


def test_records_land_in_kinesis(lake: AwsSettings, moto: MotoServer, start_api: StartApi) -> None:
    api = start_api(lake, moto.endpoint)
    posts = samples.posts(250)
    first = api.post("posts", posts, **{"Idempotency-Key": "p-1"})
    events = api.client.post(
        "/v1/datasets/events/records",
        content=b"\n".join(orjson.dumps(e) for e in samples.events(20)),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert first.status_code == 202
    assert events.status_code == 202
    records = asyncio.run(read_stream(lake))
    assert sorted(r.envelope.id for r in records if r.envelope.dataset == "posts") == sorted(
        str(p["id"]) for p in posts
    )
    assert Counter(r.envelope.id for r in records) == Counter(
        first.json()["ids"] + events.json()["ids"]
    )
    by_id = {r.envelope.id: r for r in records}
    for post in posts:  # untouched data, partition key from userId, same user on one shard
        record = by_id[str(post["id"])]
        assert record.envelope.data == post
        assert record.partition_key == str(post["userId"])
        assert record.envelope.source == "api:wire"
    shards_per_user = {
        u: {r.shard_id for r in records if r.partition_key == u}
        for u in {r.partition_key for r in records if r.envelope.dataset == "posts"}
    }
    assert all(len(s) == 1 for s in shards_per_user.values())
    assert api.client.get("/readyz").json()["status"] == "ready"


def test_records_land_in_s3_once_per_request(
    lake: AwsSettings, moto: MotoServer, start_api: StartApi
) -> None:
    api = start_api(lake, moto.endpoint, API_SINK="s3")
    posts = samples.posts(10)
    first = api.post("posts", posts, **{"Idempotency-Key": "s3-req"})
    retry = api.post("posts", posts, **{"Idempotency-Key": "s3-req"})
    assert first.status_code == retry.status_code == 202
    assert first.json()["ids"] == retry.json()["ids"]
    objects = asyncio.run(read_lines(lake, "raw/posts/"))
    assert len(objects) == 1  # the retry hit the same create-only key (412 → already written)
    ((key, lines),) = objects.items()
    assert key.startswith("raw/posts/year=")
    assert [orjson.loads(line)["data"] for line in lines] == posts
    assert api.client.get("/readyz").json() == {"status": "ready", "sink": "s3"}


def test_partial_put_records_failures_are_retried_exactly(
    lake: AwsSettings, proxy: FaultProxy, start_api: StartApi
) -> None:
    api = start_api(lake, proxy.endpoint)
    proxy.faults.put_records_fail_fraction = 0.3
    acked: list[str] = []
    for i in range(5):
        response = api.post("posts", samples.posts(100, seed=i, first_id=i * 100 + 1))
        assert response.status_code == 202, response.text
        acked += response.json()["ids"]
    assert proxy.injected["kinesis.put_records_entry"] > 50
    assert stream_ids(lake) == Counter(acked)  # every acked record once: no loss, no dupes


def test_sink_outage_is_503_then_recovers(
    lake: AwsSettings, proxy: FaultProxy, start_api: StartApi
) -> None:
    # Without botocore's own retries on top of ours, each refusal comes back in ~0.2 s.
    api = start_api(lake, proxy.endpoint, API_SINK_MAX_ATTEMPTS="3", AWS_MAX_ATTEMPTS="1")
    acked: list[str] = []
    for fault in ("down", "throttle"):
        if fault == "down":
            proxy.faults.down = {"kinesis"}
        else:
            proxy.faults.throttle_put_records = True
        refused = api.post("posts", samples.posts(5, seed=9, first_id=900))
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"] == "sink_unavailable"
        if fault == "down":
            assert api.client.get("/readyz").status_code == 503
        proxy.faults.down, proxy.faults.throttle_put_records = set(), False
        recovered = api.post("posts", samples.posts(5, seed=9, first_id=900))
        assert recovered.status_code == 202
        acked += recovered.json()["ids"]
    assert api.client.get("/readyz").status_code == 200
    # Refused requests wrote nothing; each recovered one landed once.
    assert stream_ids(lake) == Counter(acked)


def test_lake_outage_acknowledges_nothing_and_the_retry_lands_once(
    lake: AwsSettings, proxy: FaultProxy, start_api: StartApi
) -> None:
    api = start_api(lake, proxy.endpoint, AWS_MAX_ATTEMPTS="1")
    proxy.faults.down = {"s3"}  # the Idempotency-Key claim and the quarantine live in S3
    body = [*samples.posts(3), {"id": "bad"}]
    response = api.post("posts", body, **{"Idempotency-Key": "lake-down"})
    assert response.status_code == 503
    assert stream_ids(lake) == Counter()  # refused before the sink: nothing on the stream
    proxy.faults.down = set()
    retried = api.post("posts", body, **{"Idempotency-Key": "lake-down"})
    assert retried.status_code == 202
    assert stream_ids(lake) == Counter(retried.json()["ids"])
    assert len(asyncio.run(read_lines(lake, "quarantine/"))) == 1


def test_sigterm_drains_in_flight_requests(
    lake: AwsSettings, proxy: FaultProxy, start_api: StartApi
) -> None:
    api = start_api(lake, proxy.endpoint)
    proxy.faults.latency_s = 1.5
    puts = proxy.calls["kinesis.PutRecords"]
    with httpx.Client(timeout=30, headers=AUTH) as client, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            client.post, f"{api.url}/v1/datasets/posts/records", json=samples.posts(3)
        )
        deadline = time.monotonic() + 30
        while proxy.calls["kinesis.PutRecords"] == puts:  # until it waits on (slow) Kinesis
            assert time.monotonic() < deadline
            time.sleep(0.01)
        api.process.signal(signal.SIGTERM)
        response = pending.result()
    assert response.status_code == 202
    # uvicorn re-raises the SIGTERM it caught once the drain is done, so the exit is "by signal".
    assert api.process.stop(timeout=20) in (0, -signal.SIGTERM)
    proxy.faults.latency_s = 0
    assert stream_ids(lake) == Counter(response.json()["ids"])


def test_reused_idempotency_key_is_409_and_writes_nothing_in_s3(
    lake: AwsSettings, moto: MotoServer, start_api: StartApi
) -> None:
    api = start_api(lake, moto.endpoint, API_SINK="s3")
    first_body = [*samples.posts(3), {"id": "bad"}]
    first = api.post("posts", first_body, **{"Idempotency-Key": "reuse"})
    assert first.status_code == 202
    before = asyncio.run(read_lines(lake, "raw/posts/year="))
    quarantined = asyncio.run(read_lines(lake, "quarantine/"))
    reused = api.post(
        "posts", samples.posts(3, seed=7, first_id=50), **{"Idempotency-Key": "reuse"}
    )
    assert reused.status_code == 409, reused.text
    assert reused.json()["error"] == "idempotency_key_reused"
    retry = api.post("posts", first_body, **{"Idempotency-Key": "reuse"})
    assert retry.json() == first.json()
    assert asyncio.run(read_lines(lake, "raw/posts/year=")) == before
    assert asyncio.run(read_lines(lake, "quarantine/")) == quarantined


def test_missing_credentials_are_500_not_retry(
    lake: AwsSettings, moto: MotoServer, start_api: StartApi, tmp_path: Path
) -> None:
    no_credentials = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SESSION_TOKEN": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    api = start_api(lake, moto.endpoint, **no_credentials)
    response = api.post("posts", samples.posts(2), **{"Idempotency-Key": "no-creds"})
    assert response.status_code == 500, response.text
    assert response.json()["request_id"] == "no-creds"
    assert "Retry-After" not in response.headers
    # The child's output reaches the log through the test's echo thread, after the response.
    log = tmp_path / f"api-{api.url.rsplit(':', 1)[1]}.log"
    deadline = time.monotonic() + 20
    while "NoCredentialsError" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "NoCredentialsError" in log.read_text()


def test_readyz_does_not_name_the_bucket(
    lake: AwsSettings, moto: MotoServer, start_api: StartApi
) -> None:
    api = start_api(lake, moto.endpoint, API_SINK="s3", LAKE_BUCKET="lake-123456789012-missing")
    response = httpx.get(f"{api.url}/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "sink": "s3", "component": "sink"}
    assert "123456789012" not in response.text


def test_reused_idempotency_key_is_409_and_writes_nothing_on_kinesis(
    lake: AwsSettings, moto: MotoServer, start_api: StartApi
) -> None:
    """The production sink: a reused key with other records puts nothing on the stream and
    writes no quarantine object and no claim; the identical retry still gets the first answer."""
    api = start_api(lake, moto.endpoint)
    first_body = [*samples.posts(3), {"id": "bad"}]
    first = api.post("posts", first_body, **{"Idempotency-Key": "reuse-k"})
    assert first.status_code == 202
    on_stream = stream_ids(lake)
    lake_before = asyncio.run(read_objects(lake, ""))
    reused = api.post(
        "posts",
        [*samples.posts(3, seed=7, first_id=50), {"id": "x"}],
        **{"Idempotency-Key": "reuse-k"},
    )
    assert reused.status_code == 409, reused.text
    assert reused.json()["error"] == "idempotency_key_reused"
    assert stream_ids(lake) == on_stream
    assert asyncio.run(read_objects(lake, "")) == lake_before  # claims, quarantine: untouched
    retry = api.post("posts", first_body, **{"Idempotency-Key": "reuse-k"})
    assert retry.json() == first.json()


def test_two_bodies_with_one_key_at_once_one_lands_one_is_409(
    lake: AwsSettings, moto: MotoServer, start_api: StartApi
) -> None:
    """Concurrent requests racing for one Idempotency-Key: the create-only claim picks one
    body; the other gets 409 and nothing of it reaches the stream."""
    api = start_api(lake, moto.endpoint)
    bodies = {
        "a": samples.posts(3, seed=1, first_id=1),
        "b": samples.posts(3, seed=2, first_id=100),
    }
    landed: Counter[str] = Counter()
    for round_ in range(4):
        key = {"Idempotency-Key": f"race-{round_}"}

        def send(body: list[dict[str, Any]], key: dict[str, str] = key) -> httpx.Response:
            return api.post("posts", body, **key)

        with ThreadPoolExecutor(2) as pool:
            answers = dict(zip(bodies, pool.map(send, bodies.values()), strict=True))
        statuses = sorted(r.status_code for r in answers.values())
        assert statuses == [202, 409], statuses
        (winner,) = [name for name, r in answers.items() if r.status_code == 202]
        landed.update(answers[winner].json()["ids"])
        assert answers[winner].json()["ids"] == [str(p["id"]) for p in bodies[winner]]
    assert stream_ids(lake) == landed


def test_a_conditional_write_conflict_in_s3_is_503_and_the_retry_lands(
    lake: AwsSettings, proxy: FaultProxy, start_api: StartApi
) -> None:
    """S3 answers 409 ConditionalRequestConflict while another create-only write to the key is
    in progress: a transient refusal (503, Retry-After), not a 409 to the producer nor a 500."""
    api = start_api(lake, proxy.endpoint, API_SINK="s3", AWS_MAX_ATTEMPTS="1")
    proxy.faults.s3_conditional_conflict = True
    body = samples.posts(3)
    refused = api.post("posts", body, **{"Idempotency-Key": "conflict"})
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "sink_unavailable"
    assert refused.headers["Retry-After"]
    assert proxy.injected["s3.conditional_conflict"] >= 1
    proxy.faults.s3_conditional_conflict = False
    retried = api.post("posts", body, **{"Idempotency-Key": "conflict"})
    assert retried.status_code == 202
    raw = asyncio.run(read_lines(lake, "raw/posts/year="))
    assert sum(len(lines) for lines in raw.values()) == 3
