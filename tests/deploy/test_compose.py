"""The compose tier: the project's own docker-compose.yml, unchanged, built and run on a real
Docker engine (base images built locally by tools/base_images.py). Records POSTed to the API
container while consumer containers are SIGKILLed land in raw exactly once; `docker compose
stop` drains the consumers within their stop grace period and releases their leases.

The only overlay is test isolation: a project name of its own and host ports chosen by Docker
(the compose file publishes fixed ports, which other runs on this machine may hold)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import REPO
from tests.deploy.docker import DOCKER_ENV, build_base_images, compose_binary, docker_engine
from tributary.aws import AwsClients
from tributary.settings import AwsSettings
from tributary_stack.inspect import read_lines, wait_consumed
from tributary_stream.lease_table import DynamoDbLeaseStore

KEY = "local-dev-key"  # docker-compose.yml's API_KEYS holds its sha256
OVERRIDE = """\
services:
  moto: {ports: !override ["127.0.0.1::5000"]}
  api: {ports: !override ["127.0.0.1::8000"]}
  fakeapi: {ports: !override ["127.0.0.1::8081"]}
"""
KILLS = 3


@dataclass
class Compose:
    project: str
    override: Path
    log: Path
    binary: str = field(default_factory=compose_binary)

    def run(self, *args: str, timeout: float = 300) -> str:
        cmd = [self.binary, "-p", self.project, "-f", str(REPO / "docker-compose.yml")]
        cmd += ["-f", str(self.override), *args]
        env = {**os.environ, **DOCKER_ENV}
        result = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        with self.log.open("a") as out:
            out.write(f"$ {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        assert result.returncode == 0, f"compose {' '.join(args)}:\n{result.stderr[-4000:]}"
        return result.stdout

    def url(self, service: str, port: int) -> str:
        host, _, host_port = self.run("port", service, str(port)).strip().rpartition(":")
        return f"http://{host}:{host_port}"

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", "--all", service).split()


def docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    work = tmp_path_factory.mktemp("compose")
    with docker_engine(work / "dockerd.log"):
        build_base_images()
        override = work / "docker-compose.test.yml"
        override.write_text(OVERRIDE)
        stack = Compose(f"tributary-test-{os.getpid()}", override, work / "compose.log")
        try:
            stack.run("up", "--detach", "--build", timeout=900)
            yield stack
        finally:
            stack.run("down", "--volumes", "--remove-orphans", "--timeout", "40", timeout=300)


def lake(compose: Compose) -> AwsSettings:
    """Settings for reading what the containers wrote, from moto's published port."""
    return AwsSettings.model_validate(
        {
            "AWS_ENDPOINT_URL": compose.url("moto", 5000),
            "AWS_REGION": "us-east-1",
            "LAKE_BUCKET": "tributary-lake",
            "STREAM_NAME": "tributary-ingest",
            "LEASE_TABLE": "tributary-leases",
            "STATE_TABLE": "tributary-state",
            "GLUE_DATABASE": "tributary",
        }
    )


def wait_ready(url: str, within: float = 180) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=3).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"the API container did not get ready at {url}")


class Producer(threading.Thread):
    """POSTs batches of 50 events until stopped; keeps the ids of every acknowledged record."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/v1/datasets/events/records"
        self.acked: list[str] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            while not self.stop.is_set():
                body = [{"type": "load", "n": n + i} for i in range(50)]
                n += 50
                answer = client.post(self.url, json=body)
                if answer.status_code == 202:
                    self.acked += answer.json()["ids"]
                else:
                    self.refused += 1


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_compose_up_lands_every_acknowledged_record_once_across_consumer_sigkills(
    compose: Compose,
) -> None:
    wait_ready(compose.url("api", 8000))
    consumers = compose.containers("stream-consumer")
    assert len(consumers) == 2, "deploy.replicas: 2"
    producer = Producer(compose.url("api", 8000))
    producer.start()
    try:
        for kill in range(KILLS):
            time.sleep(4)
            victim = consumers[kill % len(consumers)]
            docker("kill", "--signal", "KILL", victim)
            assert json.loads(docker("inspect", victim))[0]["State"]["ExitCode"] == 137
            time.sleep(2)
            docker("start", victim)  # as an orchestrator replaces a task: a new worker id
        time.sleep(3)
    finally:
        producer.stop.set()
        producer.join(60)
    assert producer.acked, "the API acknowledged nothing"
    assert producer.refused == 0
    aws = lake(compose)
    in_stream = [r.envelope.id for r in asyncio.run(wait_consumed(aws, within=240))]
    landed = streamed(aws)
    assert_exactly_once(producer, landed, in_stream)
    print(f"compose: {len(set(producer.acked))} records, {KILLS} SIGKILLs, 0 lost, 0 duplicated")

    # `docker compose stop` under load: SIGTERM, then stop_grace_period (30 s) before SIGKILL.
    # Exit code 0 (not 137) means the consumers drained in time; their leases are released; a
    # restart adopts no object (a drained worker checkpointed all it wrote) and every record
    # acknowledged before, during and after the stop lands exactly once.
    async def owners() -> list[str | None]:
        return [owner for owner, _ in await leases()]

    async def leases() -> list[tuple[str | None, int]]:
        async with AwsClients(aws) as clients:
            store = DynamoDbLeaseStore(await clients.dynamodb(), aws.lease_table)
            return [(lease.owner, lease.counter) for lease in await store.list_leases()]

    def all_renewed(before: list[tuple[str | None, int]]) -> bool:
        """Every lease owned and renewed since `before`: held by a live worker, not by one of
        the SIGKILLed ones whose lease has not failed over yet."""
        now = asyncio.run(leases())
        return len(now) == len(before) and all(
            owner is not None and owner == was and counter > then
            for (owner, counter), (was, then) in zip(now, before, strict=True)
        )

    loaded = Producer(compose.url("api", 8000))
    loaded.start()
    try:
        deadline = time.monotonic() + 90
        while True:
            before = asyncio.run(leases())
            time.sleep(5)  # more than a renewal interval (failover / 3)
            if all_renewed(before):
                break
            assert time.monotonic() < deadline, f"leases not all renewed before the stop: {before}"
        time.sleep(3)  # records in flight in the consumers' buffers
        compose.run("stop", "stream-consumer", timeout=120)
        for container in consumers:
            state = json.loads(docker("inspect", container))[0]["State"]
            assert (state["Running"], state["ExitCode"]) == (False, 0), state
        held = asyncio.run(owners())
        assert held == [None] * len(held), f"leases still held after stop: {held}"
        restarted = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # the engine's clock too
        compose.run("start", "stream-consumer", timeout=120)
        time.sleep(3)
    finally:
        loaded.stop.set()
        loaded.join(60)
    assert loaded.acked, "the API acknowledged nothing during the stop"
    assert loaded.refused == 0
    in_stream = [r.envelope.id for r in asyncio.run(wait_consumed(aws, within=240))]
    landed = streamed(aws)
    loaded.acked += producer.acked
    assert_exactly_once(loaded, landed, in_stream)
    for container in consumers:
        logs = docker("logs", "--since", restarted, container)
        assert "ObjectsAdopted" not in logs, f"a drained worker left work behind: {container}"
    print(f"compose: stop under load, restart: {len(set(loaded.acked))} records exactly once")


def streamed(aws: AwsSettings) -> Counter[str]:
    """The ids the consumers landed in raw/events/ (the importer's events_windowed source lands
    its own `importer-…` objects there too: not the stream's)."""
    objects = asyncio.run(read_lines(aws, "raw/events/"))
    return Counter(
        orjson.loads(line)["id"]
        for key, lines in objects.items()
        if "/importer-" not in key
        for line in lines
    )


def assert_exactly_once(producer: Producer, landed: Counter[str], in_stream: list[str]) -> None:
    acked = set(producer.acked)
    assert len(acked) == len(producer.acked), "the API gave one id twice"
    assert not acked - set(landed), f"{len(acked - set(landed))} acknowledged records lost"
    duplicated = {i: n for i, n in landed.items() if n > 1}
    assert not duplicated, f"{len(duplicated)} records landed more than once"
    assert set(landed) <= set(in_stream)
